#!/usr/bin/env python3
"""The official OpenAI client talking to twinbraind's socket: models, chat (whole and
streamed, with usage), completions, stop, max_tokens, seed, and error mapping.
Usage: openai_client_check.py SOCKET"""
import sys
import httpx
import openai

sock = sys.argv[1]
client = openai.OpenAI(base_url="http://localhost/v1", api_key="unused",
                       http_client=httpx.Client(transport=httpx.HTTPTransport(uds=sock)))

models = client.models.list()
model = models.data[0].id
assert model.startswith("SmolLM2"), model

chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is the capital of Germany?"}],
                                      temperature=0, max_tokens=24)
text = chat.choices[0].message.content
assert "Berlin" in text, text
assert chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 24, chat.usage
assert chat.choices[0].finish_reason in ("stop", "length")

pieces, usage = [], None
for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=10,
                                            stream=True, stream_options={"include_usage": True}, seed=3):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
assert pieces and usage and usage.completion_tokens <= 10, (pieces, usage)

a = client.completions.create(model=model, prompt="one, two, three,", max_tokens=8, temperature=0.8, seed=11).choices[0].text
b = client.completions.create(model=model, prompt="one, two, three,", max_tokens=8, temperature=0.8, seed=11).choices[0].text
assert a == b, (a, b)
stopped = client.completions.create(model=model, prompt="one, two, three, four,", max_tokens=20, temperature=0, stop=["six"])
assert "six" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop", stopped

streamed = "".join(c.choices[0].text for c in client.completions.create(model=model, prompt="Once upon a time", max_tokens=8,
                                                                         temperature=0, stream=True) if c.choices)
assert streamed, streamed

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert "no-such-model" in str(e)
try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=-5)
    raise AssertionError("bad max_tokens accepted")
except openai.BadRequestError:
    pass
print("all OpenAI client checks passed")
