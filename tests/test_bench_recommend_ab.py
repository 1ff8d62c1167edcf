"""bench/recommend_ab.py: a git revision of the package imported beside the working
tree's, and both versions' recommend calls timed in turn on copies of one store."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import recommend_ab

import ownrank

from conftest import WordHashEncoder, needs_git_checkout

pytestmark = needs_git_checkout

TOPICS = ["football goal match", "piano concert music", "garden flower seeds"]


def test_a_revision_is_compared_with_the_working_tree(tmp_path: Path) -> None:
    rev = recommend_ab.revision_id("HEAD")
    base = recommend_ab.import_revision(rev, tmp_path / "export")
    try:
        assert base.__name__ == "ownrank_base" and base.Engine is not ownrank.Engine
        assert Path(base.__file__).is_relative_to(tmp_path / "export")
        # a store written by the base version, a copy opened by each version
        items = [
            {"id": f"i{k}", "title": f"{TOPICS[k % 3]} {k}", "properties": {"candidate": True}}
            for k in range(30)
        ]
        config = base.EngineConfig(shared_statistics="popularity")
        with base.Engine(tmp_path / "built", config, encoder=WordHashEncoder()) as engine:
            engine.catalog.upsert(items)
            for user in range(6):
                liked = [{"kind": "like", "item_id": f"i{k}"} for k in range(user % 3, 30, 3)]
                engine.interact(str(user), liked[:5])
        engines = {}
        for name, package in (("base", base), ("new", ownrank)):
            shutil.copytree(tmp_path / "built", tmp_path / name)
            engines[name] = package.Engine(
                tmp_path / name,
                package.EngineConfig(shared_statistics="popularity"),
                encoder=WordHashEncoder(),
            )
        users = [0, 1, 2, 3, 4, 5, 99]  # 99: never seen (the cold-start list)
        result = recommend_ab.compare(engines, users, rounds=2, n=5)
        for engine in engines.values():
            engine.close()
    finally:
        recommend_ab.forget_revision(tmp_path / "export")
    assert [len(result.seconds[k]) for k in ("base", "new")] == [14, 14]
    assert result.users == 7 and 0 <= result.identical <= result.same_ids <= 7
    changed = subprocess.run(
        ["git", "-C", str(recommend_ab.ROOT), "diff", "--quiet", rev, "--", "sdk", "engine",
         "storage"],
    ).returncode  # fmt: skip
    if not changed:  # the same code: every list the same, bit for bit
        assert result.identical == 7
    assert "new / base: p50" in result.summary()
