"""Knowledge bases: rows become chunks with stable ids, embedded and stored (float32) in
the database; search is exact cosine over a per-KB matrix each process caches until the
KB's ``version`` moves.

A row's id is its ``id_column`` value, else a hash of its content; a chunk's id is
``<row id>:<n>``, so writing a row again replaces its chunks instead of adding copies.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from shared.db import dialect_name
from shared.errors import Conflict, InvalidInput
from shared.kb.embedders import EmbeddingFailed, available_embedder, embedder
from shared.kb.models import KbChunk, KnowledgeBase, SyncJob
from shared.kb.reading import content_hash, content_of
from shared.kb.sources import NAME, refuse_while_synced
from shared.models import utcnow
from shared.scoping import get_named, list_named

CHUNK_CHARS = 1000
_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")


def chunks_of(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, cut at sentence or line ends
    where there is one (a longer sentence is cut at spaces, then anywhere)."""
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    pieces, current = [], ""
    for sentence in _BREAK.split(text):
        while len(sentence) > size:
            cut = sentence.rfind(" ", 0, size)
            cut = cut if cut > 0 else size
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > size:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return [p for p in pieces if p]


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# -- the knowledge bases ----------------------------------------------------------------


def create_kb(
    session: Session,
    organisation_id: uuid.UUID,
    *,
    name: str,
    embedder_name: str,
    id_column: str | None,
    metadata_columns: list[str],
) -> KnowledgeBase:
    if not NAME.match(name):
        raise InvalidInput(
            "name must be a letter or _ followed by up to 62 letters, digits or _",
            details=["name: invalid"],
            code="INVALID_REQUEST",
        )
    for column in [c for c in (id_column, *metadata_columns) if c is not None]:
        if not NAME.match(column):
            raise InvalidInput(
                f"column {column!r} is not a plain column name",
                details=[f"columns: {column!r}"],
                code="INVALID_REQUEST",
            )
    _, dimensions = available_embedder(embedder_name)
    taken = session.scalar(
        select(KnowledgeBase.id).where(
            KnowledgeBase.organisation_id == organisation_id, KnowledgeBase.name == name
        )
    )
    if taken is not None:
        raise Conflict(f"a knowledge base named {name!r} exists", code="DUPLICATE_KB")
    kb = KnowledgeBase(
        organisation_id=organisation_id,
        name=name,
        embedder=embedder_name,
        dimensions=dimensions,
        id_column=id_column,
        metadata_columns=list(metadata_columns),
        version=0,
    )
    session.add(kb)
    session.flush()
    return kb


def get_kb(session: Session, organisation_id: uuid.UUID, name: str) -> KnowledgeBase:
    return get_named(session, KnowledgeBase, organisation_id, name, "knowledge base")


def list_kbs(session: Session, organisation_id: uuid.UUID) -> list[KnowledgeBase]:
    return list_named(session, KnowledgeBase, organisation_id)


def delete_kb(session: Session, organisation_id: uuid.UUID, name: str) -> None:
    kb = get_kb(session, organisation_id, name)
    refuse_while_synced(session, SyncJob.kb_id, kb.id, f"knowledge base {name!r}", "KB_IN_USE")
    session.delete(kb)


def chunk_count(session: Session, kb: KnowledgeBase) -> int:
    return session.scalar(select(func.count()).where(KbChunk.kb_id == kb.id)) or 0


# -- writing rows -------------------------------------------------------------------------


def _embed(kb: KnowledgeBase, texts: list[str]) -> np.ndarray:
    """``texts`` embedded by the KB's embedder, which must still give the KB's dimensions
    (an embedder whose settings changed since cannot be mixed with the stored vectors)."""
    embed, _ = embedder(kb.embedder)
    vectors = embed(texts)
    if vectors.shape[1] != kb.dimensions:
        raise EmbeddingFailed(
            f"embedder {kb.embedder!r} now gives {vectors.shape[1]} dimensions; knowledge base "
            f"{kb.name!r} was built with {kb.dimensions}: configure it as it was, or build "
            "the knowledge base again"
        )
    return vectors


@dataclass
class PreparedRows:
    """Rows cut into chunks and embedded, ready to write: the CPU half of a write, which
    needs no database (a sync times it apart from the write)."""

    chunks: list[dict[str, Any]]
    row_ids: list[str]
    vectors: np.ndarray


def prepare_rows(
    kb: KnowledgeBase,
    rows: Sequence[dict[str, Any]],
    content_columns: Sequence[str],
    row_ids: Sequence[str] | None = None,
) -> PreparedRows:
    """Chunk and embed ``rows`` for ``kb`` (one embedding call for all of them).

    A row's id is given in ``row_ids`` (a sync knows its table's key), else it is its
    ``id_column`` value, else a hash of its content."""
    chunks: list[dict[str, Any]] = []
    ids: list[str] = []
    for index, row in enumerate(rows):
        content = content_of(row, content_columns)
        if row_ids is not None:
            row_id = row_ids[index]
        elif kb.id_column and row.get(kb.id_column) is not None:
            row_id = str(row[kb.id_column])
        else:
            row_id = content_hash(content)
        ids.append(row_id)
        metadata = {c: _json_safe(row.get(c)) for c in kb.metadata_columns if c in row}
        chunks += [
            {"row_id": row_id, "chunk_id": f"{row_id}:{n}", "content": piece, "metadata": metadata}
            for n, piece in enumerate(chunks_of(content))
        ]
    vectors = (
        _embed(kb, [c["content"] for c in chunks])
        if chunks
        else np.zeros((0, kb.dimensions), dtype=np.float32)
    )
    return PreparedRows(chunks, ids, vectors.astype(np.float32, copy=False))


def write_rows(session: Session, kb: KnowledgeBase, prepared: PreparedRows) -> int:
    """Write prepared rows: each row's chunks replace whatever it had (a row that shrank
    or emptied leaves nothing behind), and the KB's version moves. Returns the chunks
    written."""
    if dialect_name(session) == "postgresql":
        written = _write_postgresql(session, kb, prepared)
    else:
        written = _write_portable(session, kb, prepared)
    session.execute(
        update(KnowledgeBase)
        .where(KnowledgeBase.id == kb.id)
        .values(version=KnowledgeBase.version + 1)
    )
    return written


def upsert_rows(
    session: Session,
    kb: KnowledgeBase,
    rows: Sequence[dict[str, Any]],
    content_columns: Sequence[str],
    row_ids: Sequence[str] | None = None,
) -> int:
    """Write ``rows`` into ``kb`` (their chunks replaced, never duplicated); returns the
    number of chunks written."""
    return write_rows(session, kb, prepare_rows(kb, rows, content_columns, row_ids))


# PostgreSQL: the chunks go in with one binary COPY into a session-local staging table,
# then two set statements. A multi-row INSERT of 1,000 chunks with 4 KB vectors spends
# its time building and binding 8,000 parameters; COPY streams them.
_STAGE = "kb_chunks_incoming"
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    row_id varchar(255), chunk_id varchar(300), content text, metadata jsonb, embedding bytea
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE = (
    f"COPY {_STAGE} (row_id, chunk_id, content, metadata, embedding) FROM STDIN (FORMAT BINARY)"
)
_STAGE_TYPES = ["varchar", "varchar", "text", "jsonb", "bytea"]
# The rows' chunks that are not among the new ones (a row that shrank or emptied).
_DELETE_STALE = f"""
DELETE FROM kb_chunks k
WHERE k.kb_id = %(kb_id)s AND k.row_id = ANY(%(row_ids)s)
  AND NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.chunk_id = k.chunk_id)
"""
_UPSERT = f"""
INSERT INTO kb_chunks (id, kb_id, row_id, chunk_id, content, metadata, embedding, updated_at)
SELECT gen_random_uuid(), %(kb_id)s, row_id, chunk_id, content, metadata, embedding, %(now)s
FROM {_STAGE}
ON CONFLICT (kb_id, chunk_id) DO UPDATE SET content = excluded.content,
    metadata = excluded.metadata, embedding = excluded.embedding, updated_at = excluded.updated_at
"""


def _write_postgresql(session: Session, kb: KnowledgeBase, prepared: PreparedRows) -> int:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        cursor.execute(_CREATE_STAGE)
        cursor.execute(f"DELETE FROM {_STAGE}")  # ON COMMIT empties it; a failed try may not
        with cursor.copy(_COPY_STAGE) as copy:
            copy.set_types(_STAGE_TYPES)
            for chunk, vector in zip(prepared.chunks, prepared.vectors, strict=True):
                copy.write_row(
                    (
                        chunk["row_id"],
                        chunk["chunk_id"],
                        chunk["content"],
                        Jsonb(chunk["metadata"]),
                        vector.tobytes(),
                    )
                )
        parameters = {"kb_id": kb.id, "row_ids": list(dict.fromkeys(prepared.row_ids))}
        cursor.execute(_DELETE_STALE, parameters)
        cursor.execute(_UPSERT, {"kb_id": kb.id, "now": utcnow()})
    return len(prepared.chunks)


def _write_portable(session: Session, kb: KnowledgeBase, prepared: PreparedRows) -> int:
    chunks = prepared.chunks
    if prepared.row_ids:
        session.execute(
            delete(KbChunk).where(
                KbChunk.kb_id == kb.id,
                KbChunk.row_id.in_(list(dict.fromkeys(prepared.row_ids))),
                KbChunk.chunk_id.not_in([c["chunk_id"] for c in chunks] or [""]),
            )
        )
    if not chunks:
        return 0
    now = utcnow()
    table: Table = KbChunk.__table__  # type: ignore[assignment]
    statement = sqlite.insert(table).values(
        [
            {
                "id": uuid.uuid4(),
                "kb_id": kb.id,
                "row_id": c["row_id"],
                "chunk_id": c["chunk_id"],
                "content": c["content"],
                "metadata": c["metadata"],
                "embedding": vector.tobytes(),
                "updated_at": now,
            }
            for c, vector in zip(chunks, prepared.vectors, strict=True)
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.kb_id, table.c.chunk_id],
        set_={
            "content": statement.excluded.content,
            "metadata": statement.excluded.metadata,
            "embedding": statement.excluded.embedding,
            "updated_at": statement.excluded.updated_at,
        },
    )
    session.execute(statement)
    return len(chunks)


# -- search -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Matrix:
    version: int
    ids: list[str]
    chunk_ids: list[str]
    contents: list[str]
    metadata: list[dict[str, Any]]
    vectors: np.ndarray
    # Per metadata key, made on its first filter: each chunk's value as a code, and the
    # codes of the values. A filter is then one comparison over an integer array.
    columns: dict[str, tuple[np.ndarray, dict[Any, int]]] = field(default_factory=dict)

    def column(self, key: str) -> tuple[np.ndarray, dict[Any, int]]:
        found = self.columns.get(key)
        if found is None:
            codes: dict[Any, int] = {}
            values = np.fromiter(
                (codes.setdefault(m.get(key), len(codes)) for m in self.metadata),
                dtype=np.int32,
                count=len(self.metadata),
            )
            found = self.columns[key] = (values, codes)
        return found

    def passing(self, filters: dict[str, Any]) -> np.ndarray:
        """The positions of the chunks whose metadata has each key equal to its wanted
        value (or to one of them, for a list)."""
        mask = np.ones(len(self.ids), dtype=bool)
        for key, wanted in filters.items():
            values, codes = self.column(key)
            choices = wanted if isinstance(wanted, list) else [wanted]
            wanted_codes = [codes[v] for v in choices if _hashable(v) and v in codes]
            mask &= np.isin(values, np.array(wanted_codes, dtype=np.int32))
        return np.flatnonzero(mask)


def _hashable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


_matrices: OrderedDict[uuid.UUID, _Matrix] = OrderedDict()
_lock = threading.Lock()
MAX_CACHED_KBS = 16


def _matrix(session: Session, kb: KnowledgeBase) -> _Matrix:
    """The KB's chunks as one matrix, from this process's cache unless the KB changed."""
    with _lock:
        cached = _matrices.get(kb.id)
        if cached is not None and cached.version == kb.version:
            _matrices.move_to_end(kb.id)
            return cached
    rows = session.execute(
        select(
            KbChunk.row_id, KbChunk.chunk_id, KbChunk.content, KbChunk.metadata_, KbChunk.embedding
        )
        .where(KbChunk.kb_id == kb.id)
        .order_by(KbChunk.chunk_id)
    ).all()
    vectors = (
        np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        if rows
        else np.zeros((0, kb.dimensions), dtype=np.float32)
    )
    matrix = _Matrix(
        kb.version,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [dict(r[3] or {}) for r in rows],
        vectors,
    )
    with _lock:
        _matrices[kb.id] = matrix
        while len(_matrices) > MAX_CACHED_KBS:
            _matrices.popitem(last=False)
    return matrix


def search(
    session: Session,
    kb: KnowledgeBase,
    query: str,
    *,
    limit: int,
    relevance_threshold: float | None,
    filters: dict[str, Any],
) -> list[dict[str, Any]]:
    """The chunks nearest ``query`` by cosine similarity, best first; metadata filters
    apply before ranking. ``relevance`` is the similarity (0..1), ``distance`` 1 minus it."""
    matrix = _matrix(session, kb)
    if not matrix.ids:
        return []
    candidates = None
    if filters:  # only the rows that pass are ranked
        candidates = matrix.passing(filters)
        if candidates.size == 0:
            return []
    q = _embed(kb, [query])[0]
    if candidates is None:
        scores = matrix.vectors @ q
    elif candidates.size * 8 < len(matrix.ids):  # few pass: gather just those rows
        scores = matrix.vectors[candidates] @ q
    else:  # many pass: scoring every row beats copying a large part of the matrix
        scores = (matrix.vectors @ q)[candidates]
    k = min(limit, len(scores))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    answers = []
    for position in top:
        index = int(candidates[position]) if candidates is not None else int(position)
        relevance = float(max(0.0, min(1.0, scores[position])))
        if relevance_threshold is not None and relevance < relevance_threshold:
            continue
        answers.append(
            {
                "id": matrix.ids[index],
                "chunk_id": matrix.chunk_ids[index],
                "chunk_content": matrix.contents[index],
                "metadata": matrix.metadata[index],
                "distance": round(1.0 - float(scores[position]), 6),
                "relevance": round(relevance, 6),
            }
        )
    return answers
