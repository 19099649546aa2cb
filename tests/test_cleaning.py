from __future__ import annotations

import pytest

from embedops.cleaning import CleanOptions, CleanStats, FieldSpec, clean_text, content_hash
from embedops.errors import ConfigError


def _clean(text: str, **kw: bool) -> tuple[str, CleanStats]:
    stats = CleanStats()
    return clean_text(text, CleanOptions(**kw), stats), stats


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("the  #36;10 million prize", "the $10 million prize"),
        ("said  quot;hello, quot; and", 'said "hello," and'),
        ("he doesn #39;t", "he doesn't"),
        ("it #39;s here", "it's here"),
        ("&lt;b&gt;Bold&lt;/b&gt; news", "Bold news"),
        ("<p>Hello <a href='x'>world</a></p>", "Hello world"),
        ("A second\\team of rocketeers", "A second team of rocketeers"),
        ("Fish &amp; chips", "Fish & chips"),
        ("a < b and c > d", "a < b and c > d"),
    ],
)
def test_markup(raw: str, expected: str) -> None:
    assert _clean(raw)[0] == expected


def test_control_characters_and_nul_removed() -> None:
    text, stats = _clean("bad\x00byte\x07 and\x1b[0m escape")
    assert text == "bad byte and [0m escape"
    assert stats.control_chars == 1


def test_nfkc_and_whitespace_normalisation_switchable() -> None:
    raw = "  ﬁne\u00a0coffee\n\t café①  "
    assert _clean(raw)[0] == "fine coffee café1"
    assert _clean(raw, normalize=False)[0] == raw


def test_markup_switchable() -> None:
    assert _clean("<b>x</b> &amp;", strip_markup=False)[0] == "<b>x</b> &amp;"


def test_content_hash_is_stable_and_distinct() -> None:
    assert content_hash("a") == content_hash("a")
    assert content_hash("a") != content_hash("b")
    assert len(content_hash("a")) == 32


def test_field_spec_validation() -> None:
    assert FieldSpec(template="{title}. {description} {title}").template_fields == (
        "title",
        "description",
    )
    with pytest.raises(ConfigError, match="exactly one"):
        FieldSpec(text_field="a", template="{b}")
    with pytest.raises(ConfigError, match="exactly one"):
        FieldSpec()
    with pytest.raises(ConfigError, match="not a plain field name"):
        FieldSpec(template="{title!r}")
    with pytest.raises(ConfigError, match="names no field"):
        FieldSpec(template="no fields")
    with pytest.raises(ConfigError, match="not valid"):
        FieldSpec(template="{unclosed")


def test_bare_entities_match_the_lookbehind_regex() -> None:
    """The fast search gives what the plain look-behind pattern gives, on random strings."""
    import random
    import re

    from embedops.cleaning import _BARE_NAMED_ENTITY, _BARE_NUMERIC_ENTITY, _restore_entities

    rng = random.Random(7)
    alphabet = ["&", "#", ";", " ", "  ", "x", "3", "_", "é", "²", "quot", "amp", "nbsp", "lt", "a"]
    for pattern in (_BARE_NUMERIC_ENTITY, _BARE_NAMED_ENTITY):
        reference = re.compile(r" ?(?<![&\w])" + pattern.pattern)
        for _ in range(3000):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 14)))
            expected = reference.sub(lambda m: "&" + m.group().lstrip(" "), text)
            assert _restore_entities(text, pattern) == expected, text


def _plain_steps(text: str) -> str:
    """Every cleaning step as a plain regex or call, without the fast paths of ``clean``."""
    import html
    import re
    import unicodedata

    control = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
    out = control.sub(" ", text)
    out = re.sub(r" ?(?<![&\w])#(\d{1,7}|x[0-9a-fA-F]{1,6});", r"&#\1;", out)
    out = re.sub(r" ?(?<![&\w])(quot|amp|lt|gt|nbsp|apos);", r"&\1;", out)
    out = html.unescape(out)
    out = re.sub(r"</?[A-Za-z][^<>]{0,500}>", " ", out)
    out = re.sub(r"\\+", " ", out)
    out = control.sub(" ", out)
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", out)).strip()


def test_fast_paths_give_the_plain_steps_output() -> None:
    """``clean`` skips steps that have nothing to do; on real news and on random strings of
    whitespace, control characters, entities, tags and non-ASCII it gives the same text."""
    import random

    from embedops.cleaning import clean
    from embedops.quality import read_ag_news
    from tests.conftest import shared_file

    texts, _ = read_ag_news(shared_file("ag_news_test.csv"))
    rng = random.Random(11)
    words = "a Zz é ﬁ x; ; #39; quot; amp; apos; lt; gt; nbsp; &amp; &#0; &#10; &nbsp; <b> </p>"
    spaces = [" ", "  ", "\t", "\n", "\r", "\x0b", "\x1c", "\x00", "\x85", "\xa0", "\u2028"]
    pieces = [*words.split(), *spaces, "\u3000", " #36;", " amp;", " apos;", "\\"]
    randoms = ["".join(rng.choices(pieces, k=rng.randrange(0, 12))) for _ in range(4000)]
    for text in [*texts, *randoms]:
        assert clean(text, True, True)[0] == _plain_steps(text), repr(text)
