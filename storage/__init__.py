"""Persistence of ownrank: the LMDB environment and the FAISS index files."""
