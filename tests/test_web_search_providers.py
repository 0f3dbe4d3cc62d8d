"""Web search providers against a real HTTP server speaking SearXNG's, Brave's and Tavily's APIs;
and the citations an answer earns from their results."""

from __future__ import annotations

import logging

import pytest

from tests.search_server import SearchServer, hit
from threadline.config import WebSearchSettings
from threadline.tools.citations import citations, results_for_model
from threadline.tools.search_providers import SearchFailed, SearchOptions, SearchResult, search_provider

KEY = "tvly-secret-key-9f8e7d6c"
PROVIDERS = ["searxng", "brave", "tavily"]


@pytest.fixture(scope="module")
def search_server():
    with SearchServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def search(search_server):
    search_server.reset()
    return search_server


def settings_for(provider: str, server: SearchServer, **overrides) -> WebSearchSettings:
    key = None if provider == "searxng" else KEY
    return WebSearchSettings(**{"provider": provider, "base_url": server.base_url, "api_key": key, **overrides})


async def run_search(settings: WebSearchSettings, query: str, **options) -> list[SearchResult]:
    provider = search_provider(settings)
    assert provider is not None
    try:
        return await provider.search(query, SearchOptions(**{"max_results": 10, **options}))
    finally:
        await provider.aclose()


async def failure(settings: WebSearchSettings, query: str = "anything") -> str:
    with pytest.raises(SearchFailed) as raised:
        await run_search(settings, query)
    return str(raised.value)


def test_no_table_means_no_provider():
    assert search_provider(None) is None


# --- Each provider's API ------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_results_come_back_in_order_with_title_url_and_snippet(search, provider):
    search.add("threadline", hit("https://example.com/a", "Page A", "About A"), hit("https://docs.example.org/b", "Page B", "About B"))
    results = await run_search(settings_for(provider, search), "threadline")
    assert results == [SearchResult("https://example.com/a", "Page A", "About A"), SearchResult("https://docs.example.org/b", "Page B", "About B")]
    assert [request.api for request in search.requests] == [provider]


@pytest.mark.asyncio
async def test_searxng_asks_its_json_api_with_a_language_from_the_location(search):
    await run_search(settings_for("searxng", search), "wetter", user_location={"type": "approximate", "country": "DE", "city": "Berlin"})
    [request] = search.requests
    assert (request.method, request.path) == ("GET", "/search")
    assert request.params == {"q": "wetter", "format": "json", "language": "de-DE"}


@pytest.mark.asyncio
async def test_searxng_leaves_the_language_to_the_instance_when_the_country_has_several(search):
    await run_search(settings_for("searxng", search), "météo", user_location={"type": "approximate", "country": "CH"})
    assert search.requests[0].params == {"q": "météo", "format": "json"}


@pytest.mark.asyncio
async def test_brave_sends_its_key_count_country_and_location_headers(search):
    location = {"type": "approximate", "country": "gb", "city": "London", "region": "ENG", "timezone": "Europe/London"}
    await run_search(settings_for("brave", search), "tea", max_results=7, user_location=location)
    [request] = search.requests
    assert (request.method, request.path) == ("GET", "/res/v1/web/search")
    assert request.params == {"q": "tea", "count": "7", "country": "GB"}
    assert request.headers["x-subscription-token"] == KEY
    assert request.headers["x-loc-city"] == "London"
    assert request.headers["x-loc-timezone"] == "Europe/London"
    assert request.headers["x-loc-state"] == "ENG"
    assert request.headers["x-loc-country"] == "GB"


@pytest.mark.asyncio
async def test_brave_leaves_out_location_it_cannot_send_as_a_header(search):
    location = {"type": "approximate", "country": "JP", "city": "東京", "region": "Tokyo Metropolis", "timezone": "Asia/Tokyo"}
    await run_search(settings_for("brave", search), "ramen", user_location=location)
    [request] = search.requests
    assert request.params["country"] == "JP"
    assert request.headers["x-loc-timezone"] == "Asia/Tokyo"
    assert "x-loc-city" not in request.headers and "x-loc-state" not in request.headers


@pytest.mark.asyncio
async def test_brave_is_not_sent_a_country_it_does_not_take(search):
    await run_search(settings_for("brave", search), "news", user_location={"type": "approximate", "country": "IS"})
    assert "country" not in search.requests[0].params


@pytest.mark.asyncio
async def test_brave_with_no_web_results_is_an_empty_list(search):
    assert await run_search(settings_for("brave", search), "nothing scripted") == []


@pytest.mark.asyncio
@pytest.mark.parametrize(("context_size", "depth"), [(None, "basic"), ("low", "basic"), ("medium", "basic"), ("high", "advanced")])
async def test_tavily_takes_the_context_size_as_its_search_depth(search, context_size, depth):
    await run_search(settings_for("tavily", search), "rust", search_context_size=context_size)
    assert search.requests[0].body["search_depth"] == depth


@pytest.mark.asyncio
async def test_tavily_is_sent_a_bearer_key_a_country_and_asked_for_no_page_content(search):
    await run_search(settings_for("tavily", search), "rust", max_results=4, user_location={"type": "approximate", "country": "US"})
    [request] = search.requests
    assert (request.method, request.path) == ("POST", "/search")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {
        "query": "rust",
        "max_results": 4,
        "topic": "general",
        "search_depth": "basic",
        "include_raw_content": False,
        "include_answer": False,
        "include_images": False,
        "country": "united states",
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["brave", "tavily"])
async def test_base_url_overrides_the_origin(search, provider):
    # The server answers only because base_url sent the call there rather than to the provider.
    search.add("q", hit("https://example.com/", "Home", ""))
    assert len(await run_search(settings_for(provider, search), "q")) == 1


# --- Allowed domains and max_results ------------------------------------------------------


LOOK_ALIKES = [
    hit("https://example.com/a", "Apex", ""),
    hit("https://docs.example.com/b", "Subdomain", ""),
    hit("https://evil-example.com/c", "Look-alike", ""),
    hit("https://example.com.evil.net/d", "Suffix trick", ""),
    hit("https://notexample.com/e", "Another look-alike", ""),
    hit("https://other.org/f", "Elsewhere", ""),
    hit("javascript:alert(1)//example.com", "Not a page", ""),
    hit("https://EXAMPLE.com./g", "Upper case with a root dot", ""),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_allowed_domains_keep_only_those_domains_and_their_subdomains(search, provider):
    search.add("q", *LOOK_ALIKES)
    results = await run_search(settings_for(provider, search), "q", allowed_domains=["example.com"])
    assert [result.title for result in results] == ["Apex", "Subdomain", "Upper case with a root dot"]


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["searxng", "brave"])
async def test_allowed_domains_reach_engines_as_site_operators(search, provider):
    await run_search(settings_for(provider, search), "q", allowed_domains=["example.com", "https://Docs.Python.org/3/"])
    assert search.requests[0].params["q"] == "q site:example.com OR site:docs.python.org"


@pytest.mark.asyncio
async def test_allowed_domains_reach_tavily_as_include_domains(search):
    await run_search(settings_for("tavily", search), "q", allowed_domains=["example.com", "*.python.org"])
    assert search.requests[0].body["include_domains"] == ["example.com", "python.org"]


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_results_are_cut_to_max_results(search, provider):
    search.add("many", *(hit(f"https://example.com/{n}", f"Result {n}", "") for n in range(30)))
    results = await run_search(settings_for(provider, search), "many", max_results=3)
    assert [result.title for result in results] == ["Result 0", "Result 1", "Result 2"]


@pytest.mark.asyncio
async def test_results_without_a_web_address_are_dropped(search):
    search.add("q", hit("ftp://example.com/file", "FTP", ""), hit("", "Empty", ""), hit("https://example.com/", "Web", ""))
    assert [result.title for result in await run_search(settings_for("searxng", search), "q")] == ["Web"]


# --- Failures -----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_http_error_is_a_search_failure_with_its_status(search, provider):
    search.fail(500)
    message = await failure(settings_for(provider, search))
    assert "HTTP 500" in message and "scripted failure" in message


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_timeout_is_a_search_failure(search, provider):
    search.stall(10)
    message = await failure(settings_for(provider, search, timeout_s=0.2))
    assert "did not answer within 0.2 s" in message


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_json_is_a_search_failure(search, provider):
    search.malformed()
    assert "malformed JSON" in await failure(settings_for(provider, search))


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_json_that_is_not_a_search_answer_is_a_search_failure(search, provider):
    search.malformed(b"[1, 2, 3]")
    assert "not a search result" in await failure(settings_for(provider, search))


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["brave", "tavily"])
async def test_a_refused_key_is_named_as_the_cause_without_showing_it(search, provider):
    message = await failure(settings_for(provider, search, api_key="wrong-key-0123456789"))
    assert "HTTP 401" in message and "api_key" in message
    assert "wrong-key-0123456789" not in message


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", ["brave", "tavily"])
async def test_a_key_the_provider_echoes_is_not_in_the_message_or_the_log(search, provider, caplog):
    search.fail(500, body='{"error": {"detail": "bad token %s at https://api.example/x?key=%s"}, "detail": {"error": "token %s"}}' % (KEY, KEY, KEY))
    with caplog.at_level(logging.DEBUG):
        message = await failure(settings_for(provider, search))
    assert "HTTP 500" in message
    assert KEY not in message and KEY not in caplog.text
    assert search.base_url not in message


@pytest.mark.asyncio
async def test_an_unreachable_provider_is_a_search_failure_without_its_address(search):
    with SearchServer() as gone:
        base_url = gone.base_url
    message = await failure(WebSearchSettings(provider="searxng", base_url=base_url))
    assert "could not reach SearXNG" in message
    assert base_url.removeprefix("http://") not in message


@pytest.mark.asyncio
async def test_searxng_without_json_enabled_says_how_to_enable_it(search):
    search.fail(403)
    assert "search.formats" in await failure(settings_for("searxng", search))


# --- What the model reads, and citations --------------------------------------------------


SOURCES = [
    SearchResult("https://example.com/a", "Page A", "About A"),
    SearchResult("https://docs.example.org/b/", "Page B", "About B"),
    SearchResult("https://en.wikipedia.org/wiki/Rust_(programming_language)", "Rust", "A language"),
]


def cited(text: str, annotation: dict) -> str:
    return text[annotation["start_index"] : annotation["end_index"]]


def test_the_model_reads_numbered_results_and_how_to_cite_them():
    text = results_for_model("rust", SOURCES)
    assert "[1] Page A\nURL: https://example.com/a\nAbout A" in text
    assert "[3] Rust\nURL: https://en.wikipedia.org/wiki/Rust_(programming_language)" in text
    assert "[n]" in text or "like [1]" in text


def test_the_model_is_told_when_nothing_was_found():
    assert "no results" in results_for_model("rust", [])


def test_numbered_markers_cite_results_in_the_order_given():
    text = "A is first [1]. B and Rust agree [2][3]. There is no [4] or [0]."
    annotations = citations(text, SOURCES)
    assert [(cited(text, a), a["url"], a["title"]) for a in annotations] == [
        ("[1]", "https://example.com/a", "Page A"),
        ("[2]", "https://docs.example.org/b/", "Page B"),
        ("[3]", SOURCES[2].url, "Rust"),
    ]
    assert annotations[0] == {"type": "url_citation", "start_index": 11, "end_index": 14, "url": "https://example.com/a", "title": "Page A"}


def test_a_marker_listing_several_results_cites_each_on_its_number():
    text = "Both say so [1, 3]."
    assert [(cited(text, a), a["title"]) for a in citations(text, SOURCES)] == [("1", "Page A"), ("3", "Rust")]


def test_a_url_written_out_is_cited_without_the_punctuation_after_it():
    text = "See https://example.com/a. Also https://docs.example.org/b and https://en.wikipedia.org/wiki/Rust_(programming_language)!"
    annotations = citations(text, SOURCES)
    assert [cited(text, a) for a in annotations] == ["https://example.com/a", "https://docs.example.org/b", SOURCES[2].url]
    assert annotations[1]["url"] == "https://docs.example.org/b/"  # the result's own URL


def test_a_longer_url_is_not_a_citation_of_its_prefix():
    assert citations("See https://example.com/abc and https://example.com/a/more", SOURCES) == []


def test_a_markdown_link_to_a_result_is_cited_as_a_whole():
    text = "Read [the page](https://example.com/a) and [Rust](<https://en.wikipedia.org/wiki/Rust_(programming_language)>)."
    annotations = citations(text, SOURCES)
    assert [cited(text, a) for a in annotations] == ["[the page](https://example.com/a)", "[Rust](<https://en.wikipedia.org/wiki/Rust_(programming_language)>)"]
    assert [a["title"] for a in annotations] == ["Page A", "Rust"]


def test_a_link_whose_text_is_a_number_is_cited_once():
    text = "As shown [1](https://docs.example.org/b/)."
    annotations = citations(text, SOURCES)
    assert [(cited(text, a), a["title"]) for a in annotations] == [("[1](https://docs.example.org/b/)", "Page B")]


def test_text_that_cites_nothing_has_no_annotations():
    assert citations("Nothing cited here, not even https://other.org/ or [a](https://other.org/).", SOURCES) == []
    assert citations("Something [1].", []) == []


def test_indexes_are_string_offsets_past_characters_outside_ascii():
    text = "Ünïcødé 🦀 text [2] then https://example.com/a"
    annotations = citations(text, SOURCES)
    assert [cited(text, a) for a in annotations] == ["[2]", "https://example.com/a"]


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_without_live_access_no_result_page_is_fetched(search, provider):
    # The result's page is on the same server, so a fetch of it would be recorded there.
    search.add("q", hit(f"{search.base_url}/search?page=1", "A page here", "snippet"))
    results = await run_search(settings_for(provider, search), "q", live=False)
    assert [result.title for result in results] == ["A page here"]
    assert [request.api for request in search.requests] == [provider]
