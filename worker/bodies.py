"""Reading a request body without letting a huge one into memory."""

from __future__ import annotations

from starlette.requests import Request


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be longer than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    # Refuse before reading a byte: a huge declared body never reaches memory.
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    # A chunked body declares no length, and a declared one may lie: count as it comes.
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
