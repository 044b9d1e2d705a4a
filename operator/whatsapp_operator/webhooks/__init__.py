"""Evolution's webhooks in: authenticated, validated and stored in Postgres before the 2xx (`receiver`),
then processed from a retrying queue with a dead-letter state (`worker` over the `inbox` table).

Processing a webhook pulls the instance's next probe forward: the probe reads the live state, so
events that arrive late, twice or out of order (Evolution retries each one on its own) are harmless.
"""
