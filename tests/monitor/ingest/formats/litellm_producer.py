"""A real LiteLLM producer: LiteLLM's own ``completion`` builds its ``StandardLoggingPayload`` (the object its
proxy's loggers ship), which a `CustomLogger` collects and writes one per line, serialised with LiteLLM's own
``safe_dumps`` — what a Kafka logger for LiteLLM puts in a message.

No model server is needed: ``mock_response`` runs LiteLLM's whole logging path (usage, cost from its bundled
price map, timing, the failure payload of a mocked rate limit) without the network.
Run as ``python -m tests.monitor.ingest.formats.litellm_producer OUT``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

CALLS = [
    ("What is rye?", "A grain used for bread."),
    ("Repeat this key: AKIAZ7Q4K2M3N6P5R2TX", "Sure: AKIAZ7Q4K2M3N6P5R2TX"),
    ("Name one colour.", "Blue."),
]


def main(out: Path) -> None:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # the bundled price map: no download
    import litellm
    from litellm.integrations.custom_logger import CustomLogger
    from litellm.litellm_core_utils.safe_json_dumps import safe_dumps

    payloads: list[dict] = []

    class Collect(CustomLogger):  # type: ignore[misc]
        def log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
            payloads.append(kwargs["standard_logging_object"])

        def log_failure_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
            payloads.append(kwargs["standard_logging_object"])

    litellm.callbacks = [Collect()]
    for prompt, answer in CALLS:
        litellm.completion(model="gpt-4o-mini", mock_response=answer, metadata={"user_api_key_team_alias": "bakery"},
                           messages=[{"role": "system", "content": "be terse"}, {"role": "user", "content": prompt}])
    with contextlib.suppress(litellm.RateLimitError):
        litellm.completion(model="gpt-4o-mini", mock_response="litellm.RateLimitError",
                           messages=[{"role": "user", "content": "x"}])
    deadline = time.monotonic() + 60
    while len(payloads) < len(CALLS) + 1 and time.monotonic() < deadline:  # callbacks run on LiteLLM's threads
        time.sleep(0.05)
    out.write_text("".join(safe_dumps(p) + "\n" for p in payloads))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
