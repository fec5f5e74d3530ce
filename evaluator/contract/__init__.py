"""The API's typed contract: pydantic models of request bodies, queries and responses.

The API validates requests against these models and builds /openapi.json from
them, so the document and the checks cannot drift apart. No falcon here: the
core may import these too.
"""
