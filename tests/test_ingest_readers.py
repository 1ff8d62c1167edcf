"""Catalog file readers (JSON Lines, CSV/TSV) and ``ingest_file`` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ownrank import Engine
from ownrank.service.ingest import (
    IngestSummary,
    Record,
    detect_format,
    ingest_file,
    read_csv,
    read_jsonl,
    read_records,
)

if TYPE_CHECKING:  # tests/ is not a package; the fixture provides the instance
    from conftest import WordHashEncoder


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def errors_of(records: list[Record]) -> list[tuple[int, str]]:
    return [(line, err) for line, obj, err in records if err is not None]


def objects_of(records: list[Record]) -> list[tuple[int, dict[str, Any]]]:
    return [(line, obj) for line, obj, err in records if obj is not None]


# -- detect_format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("items.jsonl", "jsonl"),
        ("items.ndjson", "jsonl"),
        ("items.json", "jsonl"),
        ("ITEMS.JSONL", "jsonl"),
        ("items.csv", "csv"),
        ("items.tsv", "csv"),
        ("items.Csv", "csv"),
        ("archive.2024.csv", "csv"),
    ],
)
def test_detect_format_by_suffix(name: str, fmt: str) -> None:
    assert detect_format(Path(name)) == fmt


@pytest.mark.parametrize("name", ["items.txt", "items", "items.csv.gz", "items.xlsx"])
def test_detect_format_rejects_unknown_suffixes(name: str) -> None:
    with pytest.raises(ValueError, match="--format"):
        detect_format(Path(name))


# -- JSON Lines --------------------------------------------------------------------------


def test_read_jsonl_valid_lines_keep_their_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.jsonl",
        '{"id": "a", "title": "Alpha", "tags": ["x"], "properties": {"n": 1}}\n'
        "\n"
        "   \t \n"
        '{"id": "b", "body": "Beta"}\r\n'
        '{"id": "c", "title": "Gamma"}',  # no final newline
    )
    records = list(read_jsonl(path))
    assert records == [
        (1, {"id": "a", "title": "Alpha", "tags": ["x"], "properties": {"n": 1}}, None),
        (4, {"id": "b", "body": "Beta"}, None),
        (5, {"id": "c", "title": "Gamma"}, None),
    ]


def test_read_jsonl_invalid_json_and_non_objects_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.jsonl",
        '{"id": "a", "title": "ok"}\n'
        '{"id": "b", "title": \n'  # line 2: truncated
        "\n"
        "[1, 2, 3]\n"  # line 4: a list
        '"just a string"\n'  # line 5
        "42\n"  # line 6
        "null\n"  # line 7
        "{'id': 'single quotes'}\n"  # line 8: not JSON
        '{"id": "c", "title": "ok"} trailing\n'  # line 9: extra data
        '{"id": "d", "title": "ok"}\n',  # line 10
    )
    records = list(read_jsonl(path))
    assert [line for line, _, _ in records] == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert objects_of(records) == [
        (1, {"id": "a", "title": "ok"}),
        (10, {"id": "d", "title": "ok"}),
    ]
    errors = dict(errors_of(records))
    assert set(errors) == {2, 4, 5, 6, 7, 8, 9}
    for line in (2, 8, 9):
        assert errors[line].startswith("invalid JSON:")
        assert "column" in errors[line]
    assert errors[4] == "expected a JSON object, got list"
    assert errors[5] == "expected a JSON object, got str"
    assert errors[6] == "expected a JSON object, got int"
    assert errors[7] == "expected a JSON object, got NoneType"


def test_read_jsonl_empty_file_yields_nothing(tmp_path: Path) -> None:
    assert list(read_jsonl(write(tmp_path / "e.jsonl", ""))) == []
    assert list(read_jsonl(write(tmp_path / "f.jsonl", "\n\n  \n"))) == []


def test_read_jsonl_invalid_utf8_line_is_a_per_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"id": "a", "title": "x"}\n{"id": "b", "title": "\xff"}\n{"id": "c"}\n')
    records = list(read_jsonl(path))
    assert [line for line, _, _ in records] == [1, 2, 3]
    assert records[1][2] is not None


# -- CSV / TSV ---------------------------------------------------------------------------


def test_read_csv_item_columns_tags_and_properties(tmp_path: Path) -> None:
    path = write(
        tmp_path / "items.csv",
        "id,title,body,tags,published_at,properties\n"
        'a,Alpha,"Body, with comma", news | tech ||,2024-01-02T03:04:05Z,"{""lang"": ""en""}"\n'
        "b,Beta,,solo,,\n",
    )
    records = list(read_csv(path))
    assert records == [
        (
            2,
            {
                "id": "a",
                "title": "Alpha",
                "body": "Body, with comma",
                "tags": ["news", "tech"],
                "published_at": "2024-01-02T03:04:05Z",
                "properties": {"lang": "en"},
            },
            None,
        ),
        (3, {"id": "b", "title": "Beta", "tags": ["solo"]}, None),  # empty cells skipped
    ]


def test_read_csv_extra_columns_become_typed_properties(tmp_path: Path) -> None:
    path = write(
        tmp_path / "items.csv",
        "id,title,count,price,flag,off,nothing,word,list,quoted,zip,properties\n"
        'a,T,12,-1.5e2,true,false,null,hello,"[1,2]","""hi""",01234,"{""extra"": [1]}"\n'
        "b,T,,,,,,,,,,\n"
        "c,T,0,3.0,True,FALSE,None,12abc,{},,007.5,\n",
    )
    records = list(read_csv(path))
    assert errors_of(records) == []
    props = {obj["id"]: obj.get("properties") for _, obj in objects_of(records)}
    assert props["a"] == {
        "count": 12,
        "price": -150.0,
        "flag": True,
        "off": False,
        "nothing": None,
        "word": "hello",
        "list": "[1,2]",  # JSON, but not a scalar: stays text
        "quoted": '"hi"',  # a JSON string: the cell text is kept as is
        "zip": "01234",  # not a JSON number (leading zero): stays text
        "extra": [1],  # merged from the properties column
    }
    assert type(props["a"]["count"]) is int
    assert type(props["a"]["flag"]) is bool
    assert props["b"] is None  # every cell empty: no properties at all
    assert props["c"] == {
        "count": 0,
        "price": 3.0,
        "flag": "True",  # only JSON spellings are typed
        "off": "FALSE",
        "nothing": "None",
        "word": "12abc",
        "list": "{}",
        "zip": "007.5",
    }


def test_read_csv_properties_column_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "items.csv",
        "id,title,properties\n"
        "a,T,[1]\n"  # line 2: JSON but not an object
        "b,T,{oops\n"  # line 3: not JSON
        'c,T,"{""k"": 1}"\n',
    )
    records = list(read_csv(path))
    errors = errors_of(records)
    assert [line for line, _ in errors] == [2, 3]
    assert all(err.startswith("properties:") for _, err in errors)
    assert "JSON object" in errors[0][1]
    assert objects_of(records) == [(4, {"id": "c", "title": "T", "properties": {"k": 1}})]


def test_read_csv_without_id_header_is_one_error(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "ID,title\na,Alpha\nb,Beta\n")
    assert list(read_csv(path)) == [(1, None, "the CSV header must have an 'id' column")]
    empty = write(tmp_path / "empty.csv", "")
    assert list(read_csv(empty)) == [(1, None, "the CSV header must have an 'id' column")]


def test_read_csv_rows_with_more_cells_than_headers_are_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "items.csv",
        "id,title\n"
        "a,Alpha\n"
        "b,Beta,surplus\n"  # line 3
        "c\n"  # fewer cells: fine, the title is just absent
        "\n"  # blank: skipped by the csv module
        "d,Delta,x,y\n",  # line 6
    )
    records = list(read_csv(path))
    assert errors_of(records) == [
        (3, "more cells than header columns"),
        (6, "more cells than header columns"),
    ]
    assert objects_of(records) == [(2, {"id": "a", "title": "Alpha"}), (4, {"id": "c"})]


def test_read_csv_empty_id_cell_gives_an_empty_id(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "title,id\nAlpha,\n")
    assert list(read_csv(path)) == [(2, {"id": "", "title": "Alpha"}, None)]


def test_read_tsv_by_suffix(tmp_path: Path) -> None:
    text = "id\ttitle\ttags\tscore\na\tHello, world\tx|y\t4.5\n"
    tsv = write(tmp_path / "items.tsv", text)
    assert list(read_csv(tsv)) == [
        (
            2,
            {"id": "a", "title": "Hello, world", "tags": ["x", "y"], "properties": {"score": 4.5}},
            None,
        )
    ]
    # the same bytes named .csv are one comma-separated column called "id\ttitle\ttags\tscore"
    as_csv = write(tmp_path / "items.csv", text)
    assert list(read_csv(as_csv)) == [(1, None, "the CSV header must have an 'id' column")]


def test_read_records_dispatches_on_format(tmp_path: Path) -> None:
    path = write(tmp_path / "items.txt", '{"id": "a", "title": "T"}\n')
    assert list(read_records(path, "jsonl")) == [(1, {"id": "a", "title": "T"}, None)]
    csv_path = write(tmp_path / "items.dat", "id,title\na,T\n")
    assert list(read_records(csv_path, "csv")) == [(2, {"id": "a", "title": "T"}, None)]


def test_read_csv_non_finite_cells_stay_strings(tmp_path: Path) -> None:
    path = write(tmp_path / "items.csv", "id,title,a,b,c\nx,T,NaN,Infinity,1e400\n")
    ((_, obj, _),) = list(read_csv(path))
    assert obj is not None
    assert obj["properties"] == {"a": "NaN", "b": "Infinity", "c": "1e400"}


def test_read_csv_accepts_a_utf8_bom(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes("\ufeffid,title\na,Alpha\n".encode())
    assert list(read_csv(path)) == [(2, {"id": "a", "title": "Alpha"}, None)]


# -- ingest_file end to end --------------------------------------------------------------


def jsonl(*lines: Any) -> str:
    return "".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines)


CATALOG = jsonl(
    {"id": "a", "title": "alpha apples", "properties": {"n": 1}},  # 1: superseded by line 5
    "",  # 2: blank, not a record
    {"id": "b", "title": "beta bananas", "tags": ["fruit"]},  # 3
    "{not json",  # 4: rejected
    {"id": "a", "title": "alpha apricots", "properties": {"n": 2}},  # 5
    [1, 2],  # 6: rejected, not an object
    {"id": "bad id!", "title": "spaces"},  # 7: rejected, invalid id
    {"id": "c"},  # 8: rejected, no text
    {"id": "d", "title": "delta", "properties": {"tags": 1}},  # 9: rejected, reserved name
    {"id": "e", "title": "echo", "unknown": 1},  # 10: rejected, unknown field
    {"id": "f", "body": "foxtrot", "published_at": "2024-05-01T00:00:00Z"},  # 11
)


def check_counts(summary: IngestSummary, **expected: int) -> None:
    got = {k: v for k, v in summary.as_dict().items() if k != "rejected"}
    assert got == expected


def test_ingest_file_counts_and_reingest_is_unchanged(
    tmp_path: Path, engine: Engine, encoder: WordHashEncoder
) -> None:
    path = write(tmp_path / "catalog.jsonl", CATALOG)
    progress: list[int] = []
    summary = ingest_file(engine.catalog, path, on_progress=progress.append)
    check_counts(summary, records=10, added=3, updated=0, unchanged=0, superseded=1, embedded=3)
    assert [(r.line, r.item_id) for r in summary.rejected] == [
        (4, None),
        (6, None),
        (7, "bad id!"),
        (8, "c"),
        (9, "d"),
        (10, "e"),
    ]
    reasons = {r.line: r.reason for r in summary.rejected}
    assert reasons[4].startswith("invalid JSON")
    assert "id" in reasons[7]
    assert "title or body" in reasons[8]
    assert "reserved" in reasons[9]
    assert "unknown" in reasons[10]
    assert sum(progress) == summary.records
    assert encoder.texts_encoded == 3
    assert engine.catalog.count() == 3
    assert engine.catalog.get("a").title == "alpha apricots"  # the later record won
    assert engine.catalog.get("a").properties == {"n": 2}
    assert engine.catalog.get("b").tags == ("fruit",)
    assert "c" not in engine.catalog

    again = ingest_file(engine.catalog, path)
    check_counts(again, records=10, added=0, updated=0, unchanged=3, superseded=1, embedded=0)
    assert len(again.rejected) == 6
    assert encoder.texts_encoded == 3  # nothing was embedded a second time
    assert engine.catalog.count() == 3


def test_ingest_file_updates_embed_only_changed_texts(
    tmp_path: Path, engine: Engine, encoder: WordHashEncoder
) -> None:
    first = write(
        tmp_path / "v1.jsonl",
        jsonl(
            {"id": "a", "title": "alpha", "properties": {"n": 1}},
            {"id": "b", "title": "beta"},
            {"id": "c", "title": "gamma"},
        ),
    )
    check_counts(
        ingest_file(engine.catalog, first),
        records=3,
        added=3,
        updated=0,
        unchanged=0,
        superseded=0,
        embedded=3,
    )
    second = write(
        tmp_path / "v2.jsonl",
        jsonl(
            {"id": "a", "title": "alpha", "properties": {"n": 5}},  # properties only
            {"id": "b", "title": "beta, rewritten"},  # new text
            {"id": "c", "title": "gamma"},  # same
            {"id": "d", "title": "delta"},  # new
        ),
    )
    summary = ingest_file(engine.catalog, second)
    check_counts(summary, records=4, added=1, updated=2, unchanged=1, superseded=0, embedded=2)
    assert summary.rejected == []
    assert encoder.texts_encoded == 5
    assert engine.catalog.get("a").properties == {"n": 5}
    assert engine.catalog.get("b").title == "beta, rewritten"


def test_superseded_counts_duplicates_within_a_batch_only(
    tmp_path: Path, engine: Engine, encoder: WordHashEncoder
) -> None:
    path = write(
        tmp_path / "dupes.jsonl",
        jsonl(
            {"id": "a", "title": "one"},
            {"id": "a", "title": "two"},
            {"id": "a", "title": "three"},
            {"id": "b", "title": "bee"},
        ),
    )
    check_counts(
        ingest_file(engine.catalog, path),
        records=4,
        added=2,
        updated=0,
        unchanged=0,
        superseded=2,
        embedded=2,
    )
    assert engine.catalog.get("a").title == "three"

    # one record per batch: the duplicates are successive updates, not superseded
    other = write(
        tmp_path / "dupes2.jsonl",
        jsonl(
            {"id": "x", "title": "one"}, {"id": "x", "title": "two"}, {"id": "x", "title": "two"}
        ),
    )
    check_counts(
        ingest_file(engine.catalog, other, batch_size=1),
        records=3,
        added=1,
        updated=1,
        unchanged=1,
        superseded=0,
        embedded=2,
    )
    assert encoder.texts_encoded == 4
    assert engine.catalog.get("x").title == "two"


def test_ingest_csv_end_to_end(tmp_path: Path, engine: Engine, encoder: WordHashEncoder) -> None:
    path = write(
        tmp_path / "catalog.csv",
        "id,title,tags,published_at,price,lang\n"
        "p1,Red tomato seeds,garden|seeds,2024-01-01T00:00:00Z,3.5,en\n"
        "p2,Blue pot,garden,,12,\n"
        "p3,,,,1,en\n"  # line 4: no title or body
        "p4,Green hose,garden,not-a-date,7,en\n"  # line 5: bad date
        "p5,Spade,tools,,2,de,surplus\n",  # line 6: too many cells
    )
    summary = ingest_file(engine.catalog, path)
    check_counts(summary, records=5, added=2, updated=0, unchanged=0, superseded=0, embedded=2)
    assert [(r.line, r.item_id) for r in summary.rejected] == [(4, "p3"), (5, "p4"), (6, None)]
    p1 = engine.catalog.get("p1")
    assert p1.tags == ("garden", "seeds")
    assert p1.properties == {"price": 3.5, "lang": "en"}
    assert p1.published_at is not None and p1.published_at.year == 2024
    assert engine.catalog.get("p2").properties == {"price": 12}
    hits = engine.search("garden", n=5, filters={"price": {"$gt": 5}})
    assert [h.item_id for h in hits] == ["p2"]
    assert encoder.texts_encoded == 3  # two items and one query


def test_readers_reject_json_nested_too_deeply_to_parse(tmp_path: Path) -> None:
    deep = "[" * 50_000 + "]" * 50_000  # under the csv module's 128 KiB field limit
    jsonl = tmp_path / "deep.jsonl"
    jsonl.write_text(json.dumps({"id": "ok", "title": "fine"}) + "\n" + '{"id": ' + deep + "}\n")
    records = list(read_jsonl(jsonl))
    assert records[0][1] is not None
    assert (
        records[1][0] == 2 and records[1][1] is None and "nested too deeply" in str(records[1][2])
    )
    csv = tmp_path / "deep.csv"
    csv.write_text(f"id,title,cell,properties\nx1,fine,{deep},\nx2,fine,1,{deep}\n")
    first, second = list(read_csv(csv))
    assert first[1] is not None and first[1]["properties"]["cell"] == deep  # kept as text
    assert second[1] is None and "nested too deeply" in str(second[2])
