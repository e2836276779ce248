"""Every chat parameter, at and past the edges of OpenAI's ranges, thrown at a live server while
ordinary requests run beside them: sampling values, `n`, `max_tokens`, logprobs, seeds, stop
lists, penalties, logit_bias, response_format and tools together, malformed UTF-8 and lone
surrogates, content longer than the context, and clients that leave mid-stream.

What must hold: every request is answered within ANSWERED_WITHIN seconds; each edge case gets
the status tests/serving_cases.py names (200, or a 400 in OpenAI's shape), each random mix a 200
or a 400; no 5xx at all (openft documents none for a request's own values); streams end with
`[DONE]` and no error frame; the ordinary requests all get the greedy answer they got before;
and the engine's scheduler was never restarted (every fault stayed in its row). The cases and
their order are fixed by SEED, so a failure reproduces."""

import random
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.serving_cases import ANSWERED_WITHIN, ORDINARY, Answer, Case, check, edge_cases, random_mixes, send

SEED = 25
RANDOM_MIXES = 40
ORDINARY_REQUESTS = 12


def answer_to(case: Case, future) -> Answer:
    try:
        return future.result()
    except httpx.TimeoutException as error:
        raise AssertionError(f"{case.name}: no answer within {ANSWERED_WITHIN} s") from error


def test_every_parameter_at_its_edges_beside_ordinary_requests(live_server):
    rng = random.Random(SEED)
    root = live_server.base_url.removesuffix("/v1")
    client = live_server.client().with_options(timeout=ANSWERED_WITHIN)
    greedy = client.chat.completions.create(**ORDINARY).choices[0].message.content

    def ordinary(_: int) -> str:
        return client.chat.completions.create(**ORDINARY).choices[0].message.content

    cases = edge_cases() + random_mixes(rng, RANDOM_MIXES)
    jobs = [("case", case) for case in cases] + [("ordinary", n) for n in range(ORDINARY_REQUESTS)]
    rng.shuffle(jobs)
    with httpx.Client(base_url=live_server.base_url, timeout=ANSWERED_WITHIN) as http, ThreadPoolExecutor(8) as pool:
        futures = [
            (job, pool.submit(send, http, job) if kind == "case" else pool.submit(ordinary, job)) for kind, job in jobs
        ]
        for job, future in futures:
            if isinstance(job, Case):
                check(job, answer_to(job, future))
            else:
                assert future.result() == greedy, "an ordinary request's greedy answer changed"
    health = httpx.get(f"{root}/health", timeout=30).json()["engine"]
    assert health["scheduler"] == {"alive": True, "restarts": 0, "last_error": None}
    assert ordinary(0) == greedy
