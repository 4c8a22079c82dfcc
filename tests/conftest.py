import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Demo corpora and tokenizers go to a per-session temp cache, never the user's."""
    monkeypatch.setenv("SEQ2SEQ_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
