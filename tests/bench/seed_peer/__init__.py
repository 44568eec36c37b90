"""The design the seed describes, built minimally: a benchmark peer, never a service.

A FastAPI push route (one uvicorn process) that takes the Idempotency-Key with Redis
`SET NX`, writes the push with SQLAlchemy Core (the draft to PUSHING and a push
attempt row, in tables of its own in the schema `seedpeer` of the stack's Postgres)
and enqueues a Celery task on the stack's Redis (database 15); a Celery worker (two
prefork children) renders the CSV and uploads it to the stack's SFTP dropzone.

It deliberately lacks OrderFlow's guarantees, which is what makes it cheap:

- no outbox: the task is enqueued after the commit, so a crash between the two leaves
  a committed PUSHING draft with no export, for ever;
- late acknowledgement: a worker that dies after the upload and before the ack gets
  the task again, and the file is uploaded twice;
- the Redis key is the only duplicate guard, and it is taken before the transaction.

`tests/bench/seed_design.py` starts it, measures it and removes it again.
"""
