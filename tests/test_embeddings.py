"""/v1/embeddings through the SDK: the embedded WordLlama model, and an OpenAI-style upstream."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from tests.conftest import checked_client
from tests.embeddings_server import EmbeddingsServer, word_vector

MODEL = "wordllama-l2-256"


def vectors(answer) -> np.ndarray:
    return np.array([entry.embedding for entry in answer.data], dtype=np.float32)


def test_float_embeddings_come_in_order_with_unit_length(client):
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by ten percent.", "A feline rested on a rug."]
    answer = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert answer.object == "list" and answer.model == MODEL
    assert [entry.index for entry in answer.data] == [0, 1, 2]
    assert all(entry.object == "embedding" for entry in answer.data)
    found = vectors(answer)
    assert found.shape == (3, 256)
    assert np.allclose(np.linalg.norm(found, axis=1), 1, atol=1e-5)
    # Texts that mean the same are closer than texts that do not.
    assert found[0] @ found[2] > found[0] @ found[1]
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 0


def test_base64_is_the_same_vectors_as_floats(client, http):
    as_floats = vectors(client.embeddings.create(model=MODEL, input=["hello world", "goodbye"], encoding_format="float"))
    # The SDK asks for base64 by default and decodes it.
    assert np.array_equal(vectors(client.embeddings.create(model=MODEL, input=["hello world", "goodbye"])), as_floats)
    raw = http.post("/v1/embeddings", json={"model": MODEL, "input": "hello world", "encoding_format": "base64"}).json()
    assert isinstance(raw["data"][0]["embedding"], str)


def test_a_single_string_and_the_full_model_name(client):
    answer = client.embeddings.create(model="embedded/" + MODEL, input="just one", encoding_format="float")
    assert len(answer.data) == 1 and len(answer.data[0].embedding) == 256


def test_dimensions_shorten_the_vectors(client):
    full = vectors(client.embeddings.create(model=MODEL, input=["the quick brown fox"], encoding_format="float"))[0]
    short = vectors(client.embeddings.create(model=MODEL, input=["the quick brown fox"], dimensions=64, encoding_format="float"))[0]
    assert short.shape == (64,)
    assert np.allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "input": ""}, "input"),
        ({"model": MODEL, "input": ["fine", ""]}, "input"),
        ({"model": MODEL, "input": []}, "input"),
        ({"model": MODEL, "input": [1212, 318, 257]}, "input"),
        ({"model": MODEL, "input": [[1212, 318]]}, "input"),
        ({"model": MODEL, "input": ["a"] * 2049}, "input"),
        ({"model": MODEL, "input": ["text", 3]}, "input"),
        ({"model": MODEL}, "input"),
        ({"input": "text"}, "model"),
        ({"model": "text-embedding-3-small", "input": "text"}, "model"),
        ({"model": MODEL, "input": "text", "encoding_format": "hex"}, "encoding_format"),
        ({"model": MODEL, "input": "text", "dimensions": 257}, "dimensions"),
        ({"model": MODEL, "input": "text", "dimensions": 0}, "dimensions"),
    ],
)
def test_bad_requests_are_refused(http, body, param):
    answer = http.post("/v1/embeddings", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"].partition("[")[0] == param


def test_an_unknown_model_says_which_model_there_is(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="text-embedding-3-small", input="text")
    assert refused.value.code == "model_not_found"
    assert MODEL in refused.value.message


# --- an OpenAI-style upstream ------------------------------------------------------------------

UPSTREAM_KEY = "sk-upstream-embeddings"
UPSTREAM_MODEL = "text-embedding-3-small"


@pytest.fixture(scope="module")
def embeddings_upstream():
    with EmbeddingsServer(api_key=UPSTREAM_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def upstream_server(start_server, embeddings_upstream):
    config = {"provider": "openai", "base_url": embeddings_upstream.base_url, "api_key": UPSTREAM_KEY, "model": UPSTREAM_MODEL, "timeout_s": 10}
    return start_server({"embeddings": config})


@pytest.fixture
def upstream_client(upstream_server, embeddings_upstream, spec_check) -> openai.OpenAI:
    embeddings_upstream.reset()
    return checked_client(spec_check, upstream_server.url + "/v1", "unused")


def test_the_upstream_embeds_in_batches_in_order(upstream_client, embeddings_upstream):
    texts = [f"document number {index} about topic {index % 7}" for index in range(300)]
    answer = upstream_client.embeddings.create(model=UPSTREAM_MODEL, input=texts)
    assert answer.model == UPSTREAM_MODEL
    found = vectors(answer)
    expected = np.array([word_vector(text) for text in texts], dtype=np.float32)
    assert np.allclose(found, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    sent = embeddings_upstream.requests
    assert [len(request.body["input"]) for request in sent] == [256, 44]
    assert all(request.body["model"] == UPSTREAM_MODEL for request in sent)
    assert all(request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}" for request in sent)


def test_the_upstream_is_asked_for_dimensions(upstream_client, embeddings_upstream):
    answer = upstream_client.embeddings.create(model=UPSTREAM_MODEL, input="short one", dimensions=8)
    assert len(answer.data[0].embedding) == 8
    assert embeddings_upstream.requests[0].body["dimensions"] == 8


@pytest.mark.parametrize("fault", ["status", "malformed"])
def test_an_upstream_failure_is_a_502(upstream_client, embeddings_upstream, fault):
    if fault == "status":
        embeddings_upstream.fail(500, "The upstream is having a bad day.")
    else:
        embeddings_upstream.malformed()
    with pytest.raises(openai.APIStatusError) as failed:
        upstream_client.embeddings.create(model=UPSTREAM_MODEL, input="anything")
    assert failed.value.status_code == 502
    assert failed.value.body["type"] == "server_error"
    if fault == "status":
        assert "bad day" in failed.value.message and "500" in failed.value.message
    assert UPSTREAM_KEY not in failed.value.message
