"""Reference-model inference (vLLM over its OpenAI-compatible API, or in-process). Knows nothing of Kafka."""
