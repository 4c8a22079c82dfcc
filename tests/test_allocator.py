import sys
import types

import pytest

from seq2seq import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_applied_on_linux_unless_the_user_tuned_malloc(monkeypatch):
    calls = []

    def mallopt(option: int, value: int) -> int:
        calls.append((option, value))
        return 1

    monkeypatch.setattr(
        allocator.ctypes, "CDLL", lambda name: types.SimpleNamespace(mallopt=mallopt)
    )
    for key in [k for k in allocator.os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert allocator.keep_freed_memory()
    assert calls == [(allocator.M_MMAP_THRESHOLD, 32 << 20), (allocator.M_TRIM_THRESHOLD, 1 << 30)]
    for key, value in [
        ("MALLOC_ARENA_MAX", "2"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(key, value)
            calls.clear()
            assert not allocator.keep_freed_memory() and calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_real_mallopt_accepts_the_settings(monkeypatch):
    for key in [k for k in allocator.os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert allocator.keep_freed_memory()


def test_not_applied_without_glibc(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert not allocator.keep_freed_memory()


@pytest.mark.parametrize("variable", ["ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"])
def test_setup_caps_the_shape_caches_unless_the_user_chose(monkeypatch, variable):
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: True)
    monkeypatch.delenv(variable, raising=False)
    allocator.setup_memory()
    assert allocator.os.environ[variable] == "16"
    monkeypatch.setenv(variable, "1024")
    allocator.setup_memory()
    assert allocator.os.environ[variable] == "1024"
