"""Web search providers behind one small interface: SearXNG, Brave and Tavily.

    provider = search_provider(settings.tools.web_search)   # None when none is configured
    results = await provider.search("query", SearchOptions(max_results=5, ...))
    await provider.aclose()

Every provider keeps the same promises, whatever its API:
- `allowed_domains` is enforced here, not only asked of the provider: a result whose host is
  not one of the domains or a subdomain of one is dropped, and so is any result that is not an
  http(s) URL. Results are cut to `max_results`.
- `user_location` and `search_context_size` reach the providers that take them.
- Nothing here fetches a page: results are the provider's titles and snippets, and Tavily is
  asked for no raw page content. So `live: False` (the tool's `external_web_access: false`)
  holds for every provider as it stands; a later page-opening action must check it.
- A failure (an HTTP error, a timeout, a body that is not the JSON expected) raises
  SearchFailed, whose message is safe to show: no API key, no URL.
"""

from __future__ import annotations

import os
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import certifi
import orjson

from threadline.backends.upstream import KEEPALIVE_S, described, proxy_for, redact
from threadline.config import WebSearchSettings

BRAVE_ORIGIN = "https://api.search.brave.com"
TAVILY_ORIGIN = "https://api.tavily.com"
# Brave and Tavily answer at most 20 results a call.
PROVIDER_MAX_RESULTS = 20
# A search answer is a page of titles and snippets; anything this large is not one.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


@dataclass
class SearchResult:
    url: str
    title: str
    snippet: str


@dataclass
class SearchOptions:
    max_results: int
    allowed_domains: list[str] | None = None  # the tool's filters.allowed_domains; their subdomains too
    user_location: dict | None = None  # {"type": "approximate", "country", "city", "region", "timezone"}
    search_context_size: str | None = None  # low | medium | high
    live: bool = True  # False for external_web_access: false


class SearchFailed(Exception):
    """A search that did not come back; the message is safe to show to the client and the model."""


class SearchProvider(Protocol):
    async def search(self, query: str, options: SearchOptions) -> list[SearchResult]: ...

    async def aclose(self) -> None: ...


def search_provider(settings: WebSearchSettings | None) -> SearchProvider | None:
    """The provider the config names, or None when there is no [tools.web_search] table."""
    if settings is None:
        return None
    provider = {"searxng": SearxngProvider, "brave": BraveProvider, "tavily": TavilyProvider}[settings.provider]
    return provider(settings)


# --- Domains ------------------------------------------------------------------------------


def domain_name(domain: str) -> str:
    """An allowed domain as a bare host name: "https://Example.com/x" and "*.example.com." are "example.com"."""
    domain = domain.strip().lower()
    if "://" in domain:
        domain = urllib.parse.urlsplit(domain).hostname or ""
    domain = domain.split("/", 1)[0].split(":", 1)[0]  # a path or a port is not part of the name
    return domain.removeprefix("*.").strip(".")


def allowed_hosts(options: SearchOptions) -> list[str] | None:
    if not options.allowed_domains:
        return None
    return [name for name in dict.fromkeys(domain_name(d) for d in options.allowed_domains) if name]


def host_is_allowed(host: str, domains: list[str]) -> bool:
    # A subdomain is separated by a dot, so "evil-example.com" is not under "example.com".
    return any(host == domain or host.endswith("." + domain) for domain in domains)


def kept(results: list[SearchResult], options: SearchOptions) -> list[SearchResult]:
    """The results that may be shown: http(s) URLs, within the allowed domains, at most max_results."""
    domains = allowed_hosts(options)
    shown = []
    for result in results:
        try:
            parts = urllib.parse.urlsplit(result.url)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            continue
        if parts.scheme not in ("http", "https") or not host:
            continue
        if domains is not None and not host_is_allowed(host, domains):
            continue
        shown.append(result)
    return shown[: max(0, options.max_results)]


def with_site_terms(query: str, options: SearchOptions) -> str:
    """The query narrowed by `site:` operators, for engines that take them in the query."""
    domains = allowed_hosts(options)
    if not domains:
        return query
    return f"{query} {' OR '.join(f'site:{domain}' for domain in domains)}"


# --- Locations ----------------------------------------------------------------------------


def country_code(options: SearchOptions) -> str | None:
    country = (options.user_location or {}).get("country")
    return country.strip().upper() if isinstance(country, str) and len(country.strip()) == 2 else None


# The language most of a country's pages are written in, for SearXNG's `language`; countries
# with several (Belgium, Switzerland, Canada, ...) are left to the instance's default.
COUNTRY_LANGUAGE = {
    "AR": "es-AR", "AT": "de-AT", "AU": "en-AU", "BR": "pt-BR", "CL": "es-CL", "CN": "zh-CN", "CO": "es-CO",
    "CZ": "cs-CZ", "DE": "de-DE", "DK": "da-DK", "ES": "es-ES", "FI": "fi-FI", "FR": "fr-FR", "GB": "en-GB",
    "GR": "el-GR", "HU": "hu-HU", "ID": "id-ID", "IE": "en-IE", "IL": "he-IL", "IT": "it-IT", "JP": "ja-JP",
    "KR": "ko-KR", "MX": "es-MX", "NL": "nl-NL", "NO": "nb-NO", "NZ": "en-NZ", "PE": "es-PE", "PL": "pl-PL",
    "PT": "pt-PT", "RO": "ro-RO", "RU": "ru-RU", "SA": "ar-SA", "SE": "sv-SE", "TH": "th-TH", "TR": "tr-TR",
    "TW": "zh-TW", "UA": "uk-UA", "US": "en-US", "VN": "vi-VN", "ZA": "en-ZA",
}  # fmt: skip

# The countries Brave's `country` accepts (it refuses others); the rest search from everywhere.
BRAVE_COUNTRIES = frozenset(
    "AR AU AT BE BR CA CL DK FI FR DE HK IN ID IT JP KR MY MX NL NZ NO CN PL PT PH RU SA ZA ES SE CH TW TR GB US".split()
)

# Tavily's `country` takes a country's English name in lower case.
TAVILY_COUNTRIES = {
    "AE": "united arab emirates", "AR": "argentina", "AT": "austria", "AU": "australia", "BD": "bangladesh",
    "BE": "belgium", "BG": "bulgaria", "BR": "brazil", "CA": "canada", "CH": "switzerland", "CL": "chile",
    "CN": "china", "CO": "colombia", "CZ": "czech republic", "DE": "germany", "DK": "denmark", "EG": "egypt",
    "ES": "spain", "FI": "finland", "FR": "france", "GB": "united kingdom", "GR": "greece", "HK": "hong kong",
    "HU": "hungary", "ID": "indonesia", "IE": "ireland", "IL": "israel", "IN": "india", "IT": "italy",
    "JP": "japan", "KE": "kenya", "KR": "south korea", "MX": "mexico", "MY": "malaysia", "NG": "nigeria",
    "NL": "netherlands", "NO": "norway", "NZ": "new zealand", "PE": "peru", "PH": "philippines",
    "PK": "pakistan", "PL": "poland", "PT": "portugal", "RO": "romania", "RU": "russia", "SA": "saudi arabia",
    "SE": "sweden", "SG": "singapore", "TH": "thailand", "TR": "turkey", "TW": "taiwan", "UA": "ukraine",
    "US": "united states", "VN": "vietnam", "ZA": "south africa",
}  # fmt: skip


# --- The HTTP call ------------------------------------------------------------------------


class HttpProvider:
    """One provider's HTTP session, its call, and what its failures say.

    A subclass sets `name` (and `origin`, where base_url is only an override) and implements
    `search` with `call`.
    """

    name = ""
    origin = ""

    def __init__(self, settings: WebSearchSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None

    def url(self, path: str) -> str:
        return (self.settings.base_url or self.origin).rstrip("/") + path

    @property
    def http(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp ties it to the running loop."""
        if self._http is None:
            # certifi's roots: a slim image without the system's certificate store still reaches the provider.
            trusted = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S, ssl=trusted)
            proxy = proxy_for(self.url("/"))
            self._http = aiohttp.ClientSession(connector=connector, proxy=proxy)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def call(self, method: str, url: str, **request: Any) -> Any:
        """The provider's JSON answer; any failure is a SearchFailed that names no key and no URL."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        try:
            async with self.http.request(method, url, timeout=timeout, **request) as response:
                body = await read_body(response, self.failed)
                if response.status >= 400:
                    raise self.failed(self.status_message(response.status, body))
        except TimeoutError:
            raise self.failed(f"{self.name} did not answer within {self.settings.timeout_s:g} s.") from None
        except aiohttp.ClientError as error:
            raise self.failed(f"could not reach {self.name}: {self.connection_problem(error)}") from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise self.failed(f"{self.name} answered with malformed JSON.") from None

    def status_message(self, status: int, body: bytes) -> str:
        if status in (401, 403):
            return f"{self.name} refused the request (HTTP {status}): check the web search api_key."
        if status == 429:
            return f"{self.name} is rate limiting searches (HTTP 429)."
        return f"{self.name} failed (HTTP {status}): {self.safe(provider_message(body))}"

    def connection_problem(self, error: aiohttp.ClientError) -> str:
        if isinstance(error, aiohttp.ClientConnectorError):  # its words name the address; the OS's do not
            number = error.os_error.errno
            return f"{os.strerror(number)}." if number else "the connection failed."
        return self.safe(described(error))

    def failed(self, message: str) -> SearchFailed:
        """A SearchFailed; what the message quotes of the provider must have been through `safe`."""
        return SearchFailed(f"Web search failed: {message}")

    def safe(self, text: str) -> str:
        """The text without the API key, credentials or addresses, whatever the provider echoed."""
        key = self.settings.api_key
        if key:
            text = text.replace(key, "[redacted]")
        return redact(text)


async def read_body(response: aiohttp.ClientResponse, failed: Any) -> bytes:
    body = bytearray()
    while chunk := await response.content.readany():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise failed(f"the answer was larger than {MAX_ANSWER_BYTES} bytes.")
    return bytes(body)


def provider_message(body: bytes) -> str:
    """The provider's own words about an error: Brave's error.detail, Tavily's detail.error, or the text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        for container in (parsed.get("error"), parsed.get("detail"), parsed):
            if isinstance(container, str) and container:
                return container[:300]
            if isinstance(container, dict):
                for field in ("detail", "error", "message"):
                    if isinstance(container.get(field), str) and container[field]:
                        return container[field][:300]
    text = body.decode(errors="replace").strip()
    return text[:300] if text and not text.startswith("<") else "no details"


def results_from(entries: Any, snippet_field: str) -> list[SearchResult]:
    """Results from a list of the provider's objects; entries without a URL are skipped."""
    if not isinstance(entries, list):
        return []
    results = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("url"), str) and entry["url"]:
            title, snippet = entry.get("title"), entry.get(snippet_field)
            results.append(SearchResult(entry["url"], title if isinstance(title, str) else "", snippet if isinstance(snippet, str) else ""))
    return results


def expect_object(answer: Any, provider: HttpProvider) -> dict:
    if not isinstance(answer, dict):
        raise provider.failed(f"{provider.name} answered with JSON that is not a search result.")
    return answer


# --- The providers ------------------------------------------------------------------------


class SearxngProvider(HttpProvider):
    """A SearXNG instance's JSON API: GET {base_url}/search?q=...&format=json.

    The instance must allow the json format (`search.formats` in its settings.yml). Safe search
    is the instance's own default.
    """

    name = "SearXNG"

    async def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        params = {"q": with_site_terms(query, options), "format": "json"}
        if (language := COUNTRY_LANGUAGE.get(country_code(options) or "")) is not None:
            params["language"] = language
        answer = expect_object(await self.call("GET", self.url("/search"), params=params), self)
        return kept(results_from(answer.get("results"), "content"), options)

    def status_message(self, status: int, body: bytes) -> str:
        if status == 403:  # what SearXNG answers for a format its settings do not allow
            return "SearXNG refused the json format (HTTP 403): enable json in the instance's search.formats."
        return super().status_message(status, body)


class BraveProvider(HttpProvider):
    """Brave's Web Search API: GET /res/v1/web/search with the key in X-Subscription-Token."""

    name = "Brave Search"
    origin = BRAVE_ORIGIN

    async def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        params: dict[str, str] = {"q": with_site_terms(query, options), "count": str(requested(options))}
        country = country_code(options)
        if country in BRAVE_COUNTRIES:
            params["country"] = country
        headers = {"X-Subscription-Token": self.settings.api_key or "", "Accept": "application/json", **brave_location(options)}
        answer = expect_object(await self.call("GET", self.url("/res/v1/web/search"), params=params, headers=headers), self)
        web = answer.get("web")
        return kept(results_from(web.get("results") if isinstance(web, dict) else None, "description"), options)


def brave_location(options: SearchOptions) -> dict[str, str]:
    """Brave's location headers, from the parts of user_location it takes.

    Header values must be plain ASCII, so a city written otherwise ("東京") is left out.
    """
    location = options.user_location or {}
    fields = {"X-Loc-City": location.get("city"), "X-Loc-Timezone": location.get("timezone"), "X-Loc-Country": country_code(options)}
    region = location.get("region")
    if isinstance(region, str) and len(region.strip()) <= 3:  # Brave takes a state code, not a name
        fields["X-Loc-State"] = region
    return {header: value.strip() for header, value in fields.items() if isinstance(value, str) and value.strip() and is_header_safe(value)}


def is_header_safe(value: str) -> bool:
    return value.isascii() and value.isprintable()


class TavilyProvider(HttpProvider):
    """Tavily's search API: POST /search with the key as a bearer token."""

    name = "Tavily"
    origin = TAVILY_ORIGIN

    async def search(self, query: str, options: SearchOptions) -> list[SearchResult]:
        body: dict[str, Any] = {
            "query": query,
            "max_results": requested(options),
            "topic": "general",  # the topic `country` works with
            "search_depth": "advanced" if options.search_context_size == "high" else "basic",
            # Snippets only: no page content fetched for us, no generated answer, no images.
            "include_raw_content": False,
            "include_answer": False,
            "include_images": False,
        }
        if (domains := allowed_hosts(options)) is not None:
            body["include_domains"] = domains
        if (country := TAVILY_COUNTRIES.get(country_code(options) or "")) is not None:
            body["country"] = country
        headers = {"Authorization": f"Bearer {self.settings.api_key or ''}"}
        answer = expect_object(await self.call("POST", self.url("/search"), json=body, headers=headers), self)
        return kept(results_from(answer.get("results"), "content"), options)


def requested(options: SearchOptions) -> int:
    return max(1, min(options.max_results, PROVIDER_MAX_RESULTS))

