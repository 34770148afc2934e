"""Tests for core.views.drafts: a draft comes back under its key, only safe keys name files, writes are
atomic and capped, and a damaged draft reads as no draft rather than an error."""

from __future__ import annotations

import json

import pytest

from core.views import drafts


def test_a_saved_draft_comes_back_under_its_key(tmp_path):
    key = drafts.new_key()
    draft = {"language": "ko", "owner": "민지", "network": {"layers": [{"kind": "output"}], "normalize": True}, "guide_dismissed": True}
    assert drafts.save(key, draft, tmp_path)
    assert drafts.load(key, tmp_path) == draft
    assert drafts.draft_path(key, tmp_path) == tmp_path / "drafts" / f"{key}.json"
    assert drafts.load(drafts.new_key(), tmp_path) == {}, "another browser's key finds nothing"


def test_new_keys_are_random_safe_tokens():
    keys = {drafts.new_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(drafts.valid_key(key) for key in keys)


@pytest.mark.parametrize("key", ["../../etc/passwd", "a/b/c/d/e/f", "short", "", "x" * 65, "abc.defgh", "키키키키키키키키", None, 12345678])
def test_keys_that_could_name_another_file_are_refused(tmp_path, key):
    assert not drafts.valid_key(key)
    assert drafts.load(key, tmp_path) == {}
    with pytest.raises(ValueError, match="not a draft key"):
        drafts.save(key, {"owner": "x"}, tmp_path)
    assert not (tmp_path / "drafts").exists() or not any((tmp_path / "drafts").iterdir())


def test_writes_replace_the_whole_file_and_leave_no_temporary_files(tmp_path):
    key = drafts.new_key()
    for number in range(5):
        assert drafts.save(key, {"owner": f"student {number}"}, tmp_path)
    assert [path.name for path in (tmp_path / "drafts").iterdir()] == [f"{key}.json"]
    assert drafts.load(key, tmp_path) == {"owner": "student 4"}


def test_a_draft_over_the_size_cap_is_not_written(tmp_path):
    key = drafts.new_key()
    assert drafts.save(key, {"owner": "kept"}, tmp_path)
    assert not drafts.save(key, {"owner": "x" * drafts.MAX_DRAFT_BYTES}, tmp_path)
    assert drafts.load(key, tmp_path) == {"owner": "kept"}, "the last good draft stays"


@pytest.mark.parametrize("content", ["{not json", "[1, 2, 3]", "\"text\"", json.dumps({"owner": "x" * drafts.MAX_DRAFT_BYTES})])
def test_a_damaged_or_oversized_file_reads_as_no_draft(tmp_path, content):
    key = drafts.new_key()
    path = drafts.draft_path(key, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    assert drafts.load(key, tmp_path) == {}
