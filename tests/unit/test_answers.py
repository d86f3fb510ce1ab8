"""Brand mentions and cited sources found in an AI answer."""

from __future__ import annotations

from typing import Any

from shared.mentionlab.answers import Brand, extract_sources, find_mentions, project_brands

ACME = project_brands("Acme", ["Acme Inc.", "ACME Corp"], ["Globex", "Initech"])


def by_name(mentions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["displayName"]: m for m in mentions}


# ------------------------------------------------------------------------- project_brands


def test_project_brands_puts_the_project_first() -> None:
    """The project is the primary brand with its aliases, then each competitor."""
    assert [
        Brand("Acme", ("Acme Inc.", "ACME Corp"), True),
        Brand("Globex", (), False),
        Brand("Initech", (), False),
    ] == ACME


def test_project_brands_drops_empty_names() -> None:
    """Empty aliases and competitors are ignored rather than matching everywhere."""
    assert project_brands("Acme", ["", "A1"], ["", "Globex"]) == [
        Brand("Acme", ("A1",), True),
        Brand("Globex", (), False),
    ]


# -------------------------------------------------------------------------- find_mentions


def test_mentions_shape_and_order() -> None:
    """One entry per brand, in brand order, with the documented keys."""
    mentions = find_mentions("Globex leads; Acme follows.", ACME)
    assert mentions == [
        {
            "displayName": "Acme",
            "isPrimary": True,
            "mentioned": True,
            "mentionCount": 1,
            "position": 2,
        },
        {
            "displayName": "Globex",
            "isPrimary": False,
            "mentioned": True,
            "mentionCount": 1,
            "position": 1,
        },
        {
            "displayName": "Initech",
            "isPrimary": False,
            "mentioned": False,
            "mentionCount": 0,
            "position": None,
        },
    ]


def test_mentions_are_case_insensitive() -> None:
    """ACME, acme and Acme are all the same brand."""
    assert by_name(find_mentions("ACME, acme and Acme.", ACME))["Acme"]["mentionCount"] == 3


def test_aliases_count_as_the_brand() -> None:
    """An alias is a mention of its brand, and the longest name wins (no double count)."""
    found = by_name(find_mentions("Try Acme Inc. or ACME Corp today", ACME))
    assert found["Acme"]["mentionCount"] == 2
    assert found["Acme"]["position"] == 1


def test_alias_ending_in_punctuation_matches_at_the_end() -> None:
    """A name ending in a dot is found even at the end of the text."""
    brands = project_brands("Foo", ["Foo Inc."], [])
    assert find_mentions("We use Foo Inc.", brands)[0]["mentionCount"] == 1


def test_word_boundaries() -> None:
    """A brand inside another word is not a mention."""
    text = "Acmeology, Globexx and the acmes are not brands; xInitech neither."
    assert all(not m["mentioned"] for m in find_mentions(text, ACME))


def test_boundaries_around_punctuation() -> None:
    """Brands next to punctuation, quotes or line breaks are mentions."""
    text = '"Acme"\n(Globex), Initech!'
    found = by_name(find_mentions(text, ACME))
    assert [found[n]["mentionCount"] for n in ("Acme", "Globex", "Initech")] == [1, 1, 1]


def test_names_with_regex_characters_are_literal() -> None:
    """Regex metacharacters in a name are matched literally."""
    brands = project_brands("C++ Tools", [], ["A.B", "(Paren)"])
    found = by_name(find_mentions("C++ Tools beats AxB and (Paren) too", brands))
    assert found["C++ Tools"]["mentionCount"] == 1
    assert found["A.B"]["mentioned"] is False
    assert found["(Paren)"]["mentionCount"] == 1


def test_positions_rank_by_first_mention() -> None:
    """Positions are 1..n by first mention; later repeats do not change the rank."""
    text = "Initech first, then Acme, then Initech again, then Globex, then Acme."
    found = by_name(find_mentions(text, ACME))
    assert [found[n]["position"] for n in ("Initech", "Acme", "Globex")] == [1, 2, 3]
    assert (found["Initech"]["mentionCount"], found["Acme"]["mentionCount"]) == (2, 2)


def test_positions_are_dense_when_brands_are_missing() -> None:
    """Unmentioned brands take no position, so ranks stay 1..n without gaps."""
    found = by_name(find_mentions("Only Globex here.", ACME))
    assert found["Globex"]["position"] == 1
    assert found["Acme"]["position"] is None and found["Initech"]["position"] is None


def test_no_text_no_mentions() -> None:
    """An empty answer mentions nobody."""
    assert [m["mentionCount"] for m in find_mentions("", ACME)] == [0, 0, 0]


def test_mentioned_agrees_with_count() -> None:
    """``mentioned`` is exactly ``mentionCount > 0`` and ``position`` is set iff mentioned."""
    for m in find_mentions("Acme and Globex", ACME):
        assert m["mentioned"] == (m["mentionCount"] > 0)
        assert (m["position"] is None) == (not m["mentioned"])


# ------------------------------------------------------------------------ extract_sources


def test_sources_from_text_links() -> None:
    """Links in the text become ``{domain, url}`` without www. and in order."""
    text = "See https://www.example.com/a and http://docs.acme.test/b?x=1#y for more."
    assert extract_sources(text) == [
        {"domain": "example.com", "url": "https://www.example.com/a"},
        {"domain": "docs.acme.test", "url": "http://docs.acme.test/b?x=1#y"},
    ]


def test_trailing_punctuation_is_not_part_of_the_url() -> None:
    """Sentence punctuation and closing brackets or quotes end a link."""
    text = (
        'Read https://a.test/x. Or (https://b.test/y), "https://c.test/z" and [https://d.test/w]; '
        "also https://e.test/v, https://f.test/u; https://g.test/t: and https://h.test/s..."
    )
    assert [s["url"] for s in extract_sources(text)] == [
        "https://a.test/x",
        "https://b.test/y",
        "https://c.test/z",
        "https://d.test/w",
        "https://e.test/v",
        "https://f.test/u",
        "https://g.test/t",
        "https://h.test/s",
    ]


def test_duplicate_urls_are_listed_once() -> None:
    """The same URL cited twice is one source; different paths on a domain stay apart."""
    text = "https://a.test/1 https://a.test/1 https://a.test/2"
    assert [s["url"] for s in extract_sources(text)] == ["https://a.test/1", "https://a.test/2"]


def test_citations_win_over_text_links() -> None:
    """When the provider cites sources, those are the sources (links in the text are not)."""
    sources = extract_sources(
        "See https://text.test/ignored", ["https://cited.test/1", "https://www.cited.test/1"]
    )
    assert sources == [
        {"domain": "cited.test", "url": "https://cited.test/1"},
        {"domain": "cited.test", "url": "https://www.cited.test/1"},
    ]


def test_empty_citations_fall_back_to_the_text() -> None:
    """An empty citation list means: look in the text."""
    assert extract_sources("https://text.test/a", []) == [
        {"domain": "text.test", "url": "https://text.test/a"}
    ]


def test_citations_without_a_host_are_dropped() -> None:
    """A citation that is not a URL with a host is skipped."""
    assert extract_sources("", ["not a url", "https://", "https://ok.test/p"]) == [
        {"domain": "ok.test", "url": "https://ok.test/p"}
    ]


def test_no_links_no_sources() -> None:
    """Plain text, ftp links and bare domains are not sources."""
    assert extract_sources("Visit example.com or ftp://files.test/x") == []


def test_domain_is_lower_case() -> None:
    """Host names are case-insensitive and reported in lower case."""
    assert extract_sources("HTTPS://WWW.Example.COM/Path")[0]["domain"] == "example.com"
