"""Readers and answers in a SQL database (SQLAlchemy Core): SQLite by default, PostgreSQL accepted.

Nothing is ever lost: every answer is one committed transaction before the server replies (SQLite
in WAL mode with ``synchronous=FULL``, each write transaction ``BEGIN IMMEDIATE`` so concurrent
writers queue instead of failing). Changes to an answer are logged in ``answer_changes``; every
submission id is kept in ``submissions`` so a re-sent request is recognised and accepted once.

Reader tokens are stored only as SHA-256 hashes: the invite link is shown once, when made. So are the
coordinator token (in ``meta``, kept across restarts until rotated) and coordinator session ids.

CSV exports neutralise cells a spreadsheet would run as a formula (:func:`neutralise_cell`).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from dermadv.errors import DataError, DermadvError
from dermadv.readerstudy.study import Study

DB_FILE = "answers.sqlite"
SCHEMA_VERSION = "1"
SUBMISSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
CONFIDENCE_LEVELS = (1, 2, 3, 4, 5)
COORDINATOR_HASH_KEY = "coordinator_token_sha256"
PUBLIC_URL_KEY = "public_url"
SESSION_SECONDS = 12 * 3600
#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")

metadata = MetaData()

meta_table = Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text))

readers = Table(
    "readers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", String(200), nullable=False, default=""),
    Column("years_experience", Float),
    Column("seed", Integer, nullable=False),
    Column("order_json", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("consented_at", Float),
    Column("revoked_at", Float),
)

presentations = Table(
    "presentations",
    metadata,
    Column("reader_id", Integer, ForeignKey("readers.id"), nullable=False),
    Column("image_key", String(16), nullable=False),
    Column("first_shown_at", Float, nullable=False),
    Column("last_shown_at", Float, nullable=False),
    Column("shows", Integer, nullable=False),
    PrimaryKeyConstraint("reader_id", "image_key"),
)

answers = Table(
    "answers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reader_id", Integer, ForeignKey("readers.id"), nullable=False),
    Column("image_key", String(16), nullable=False),
    Column("position", Integer, nullable=False),
    Column("answer", String(32), nullable=False),
    Column("confidence", Integer),
    Column("client_ms", Float),
    Column("server_ms", Float),
    Column("shown_at", Float),
    Column("answered_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("submission_id", String(64), nullable=False),
    Column("n_changes", Integer, nullable=False, default=0),
    UniqueConstraint("reader_id", "image_key", name="one_answer_per_reader_image"),
)

answer_changes = Table(
    "answer_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reader_id", Integer, ForeignKey("readers.id"), nullable=False),
    Column("image_key", String(16), nullable=False),
    Column("old_answer", String(32), nullable=False),
    Column("old_confidence", Integer),
    Column("new_answer", String(32), nullable=False),
    Column("new_confidence", Integer),
    Column("submission_id", String(64), nullable=False),
    Column("client_ms", Float),
    Column("server_ms", Float),
    Column("changed_at", Float, nullable=False),
)

coordinator_sessions = Table(
    "coordinator_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

submissions = Table(
    "submissions",
    metadata,
    Column("reader_id", Integer, ForeignKey("readers.id"), nullable=False),
    Column("submission_id", String(64), nullable=False),
    Column("image_key", String(16), nullable=False),
    Column("answer", String(32), nullable=False),
    Column("confidence", Integer),
    Column("status", String(16), nullable=False),
    Column("received_at", Float, nullable=False),
    PrimaryKeyConstraint("reader_id", "submission_id"),
)


class StudyRequestError(DermadvError):
    """A refused request; ``status`` is the HTTP status the web app answers with."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class UnknownReader(StudyRequestError):
    """No reader has this token."""

    status = 404


class RevokedReader(StudyRequestError):
    """The reader's invitation was revoked."""

    status = 403


class NotInSet(StudyRequestError):
    """The image is not one of this reader's images."""

    status = 404


class AnswerConflict(StudyRequestError):
    """A second, different answer where changes are not allowed, or a reused submission id."""

    status = 409


class InvalidAnswer(StudyRequestError):
    """A well-formed request with values outside what the study accepts."""

    status = 422


@dataclass(frozen=True)
class Reader:
    """A reader as the app sees one (the token itself is never stored)."""

    id: int
    name: str
    role: str
    years_experience: float | None
    seed: int
    order: tuple[str, ...]
    created_at: float
    consented_at: float | None
    revoked_at: float | None


@dataclass(frozen=True)
class SubmitResult:
    """Outcome of a submission: stored, duplicate (same submission id), unchanged or changed."""

    status: str
    position: int
    answer: str
    confidence: int | None


def hash_token(token: str) -> str:
    """SHA-256 of a reader token (what the database stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


def reader_order(keys: list[str], seed: int) -> list[str]:
    """The shuffled image order of a reader, reproducible from the recorded seed."""
    perm = np.random.default_rng(seed).permutation(len(keys))
    return [keys[i] for i in perm]


def default_url(study: Study) -> str:
    """The default database: STUDY/answers.sqlite."""
    return f"sqlite:///{(study.root / DB_FILE).resolve()}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, synchronous=FULL and BEGIN IMMEDIATE transactions."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event below emits BEGIN
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=60000")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        return create_engine(_postgres_driver(url), pool_pre_ping=True, pool_size=10, max_overflow=30)
    except ImportError as exc:
        raise DataError(f"database URL {url!r} needs a driver that is not installed ({exc})") from exc
    except Exception as exc:  # ArgumentError: malformed URL
        raise DataError(f"cannot use database URL {url!r}: {exc}") from exc


def _postgres_driver(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg (3) when only that is installed."""
    import importlib.util

    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix) and importlib.util.find_spec("psycopg2") is None:
            if importlib.util.find_spec("psycopg") is not None:
                return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class AnswerStore:
    """All reads and writes of a study's readers and answers."""

    def __init__(self, study: Study, url: str | None = None) -> None:
        self.study = study
        self.url = url or default_url(study)
        self.engine = make_engine(self.url)
        self._keys = study.keys()
        self._choices = {c["value"] for c in study.choices}
        try:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                rows = dict(conn.execute(select(meta_table.c.key, meta_table.c.value)).all())
                if not rows:
                    conn.execute(
                        meta_table.insert(),
                        [
                            {"key": "study_id", "value": study.study_id},
                            {"key": "schema_version", "value": SCHEMA_VERSION},
                        ],
                    )
                elif rows.get("study_id") != study.study_id:
                    raise DataError(
                        f"database {self.url} belongs to study {rows.get('study_id')}, not to "
                        f"{study.root} (study {study.study_id}); use a fresh --db"
                    )
        except OperationalError as exc:
            raise DataError(f"cannot open the answers database {self.url}: {exc.orig}") from exc

    @property
    def safe_url(self) -> str:
        """The database URL with any password masked (for printing)."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ----- settings kept in the database -------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table (None when unset)."""
        with self._tx() as conn:
            value = conn.execute(select(meta_table.c.value).where(meta_table.c.key == key)).scalar()
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str | None, conn: Connection | None = None) -> None:
        """Set (or with None delete) a value of the ``meta`` table."""
        if conn is None:
            with self._tx() as c:
                self.set_meta(key, value, c)
            return
        conn.execute(meta_table.delete().where(meta_table.c.key == key))
        if value is not None:
            conn.execute(meta_table.insert().values(key=key, value=value))

    def ensure_coordinator_token(self) -> str | None:
        """Make the study's coordinator token if it has none; returns it then (shown once), else None.

        Only its SHA-256 is stored, so it survives restarts; :meth:`rotate_coordinator_token` replaces it.
        """
        if self.get_meta(COORDINATOR_HASH_KEY) is not None:
            return None
        return self.rotate_coordinator_token()

    def rotate_coordinator_token(self) -> str:
        """A new coordinator token (returned, stored hashed); the old one and every session stop working."""
        token = secrets.token_urlsafe(24)
        with self._tx() as conn:
            self.set_meta(COORDINATOR_HASH_KEY, hash_token(token), conn)
            conn.execute(coordinator_sessions.delete())
        return token

    def check_coordinator_token(self, token: str) -> bool:
        """Whether ``token`` is the stored coordinator token (constant-time comparison of hashes)."""
        stored = self.get_meta(COORDINATOR_HASH_KEY)
        if not stored or not isinstance(token, str) or not token or len(token) > 256:
            return False
        return secrets.compare_digest(hash_token(token), stored)

    def create_session(self) -> tuple[str, str]:
        """A new coordinator session: (session id for the cookie, its CSRF token); stored hashed."""
        sid, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.time()
        with self._tx() as conn:
            conn.execute(coordinator_sessions.delete().where(coordinator_sessions.c.expires_at < now))
            conn.execute(
                coordinator_sessions.insert().values(
                    id_hash=hash_token(sid), csrf=csrf, created_at=now, expires_at=now + SESSION_SECONDS
                )
            )
        return sid, csrf

    def session_csrf(self, sid: str) -> str | None:
        """The CSRF token of a live coordinator session, or None (unknown or expired session id)."""
        if not isinstance(sid, str) or not 16 <= len(sid) <= 128:
            return None
        with self._tx() as conn:
            row = conn.execute(
                select(coordinator_sessions.c.csrf, coordinator_sessions.c.expires_at).where(
                    coordinator_sessions.c.id_hash == hash_token(sid)
                )
            ).first()
        if row is None or row[1] < time.time():
            return None
        return str(row[0])

    def end_session(self, sid: str) -> None:
        """Log a coordinator session out."""
        with self._tx() as conn:
            conn.execute(
                coordinator_sessions.delete().where(coordinator_sessions.c.id_hash == hash_token(sid))
            )

    # ----- readers -------------------------------------------------------------------------------
    def add_reader(
        self, name: str, role: str = "", years_experience: float | None = None, seed: int | None = None
    ) -> tuple[Reader, str]:
        """Create a reader; returns (reader, token). The token is shown once and stored hashed."""
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise InvalidAnswer("reader name must be 1-200 characters")
        if years_experience is not None and not (0 <= float(years_experience) <= 80):
            raise InvalidAnswer(f"years of experience must be between 0 and 80, got {years_experience}")
        seed = secrets.randbits(31) if seed is None else int(seed)
        token = secrets.token_urlsafe(24)
        order = reader_order(self._keys, seed)
        with self._tx() as conn:
            key = conn.execute(
                readers.insert().values(
                    token_hash=hash_token(token),
                    name=name,
                    role=(role or "").strip()[:200],
                    years_experience=None if years_experience is None else float(years_experience),
                    seed=seed,
                    order_json=json.dumps(order),
                    created_at=time.time(),
                )
            ).inserted_primary_key
        assert key is not None  # set for every single-row INSERT
        return self.get_reader(int(key[0])), token

    def get_reader(self, reader_id: int) -> Reader:
        """A reader by id (UnknownReader if none)."""
        with self._tx() as conn:
            row = conn.execute(select(readers).where(readers.c.id == reader_id)).mappings().first()
        if row is None:
            raise UnknownReader(f"no reader with id {reader_id}")
        return _reader(row)

    def list_readers(self) -> list[Reader]:
        """Every reader, revoked ones included, by id."""
        with self._tx() as conn:
            rows = conn.execute(select(readers).order_by(readers.c.id)).mappings().all()
        return [_reader(r) for r in rows]

    def revoke(self, reader_id: int) -> Reader:
        """Revoke a reader's invitation (their answers stay)."""
        with self._tx() as conn:
            n = conn.execute(
                readers.update()
                .where(readers.c.id == reader_id, readers.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            ).rowcount
        reader = self.get_reader(reader_id)
        if n == 0 and reader.revoked_at is None:  # pragma: no cover - defensive
            raise UnknownReader(f"no reader with id {reader_id}")
        return reader

    def reader_by_token(self, token: str, conn: Connection | None = None) -> Reader:
        """The active reader with this token, or UnknownReader (404) / RevokedReader (403)."""
        if not isinstance(token, str) or not 16 <= len(token) <= 64:
            raise UnknownReader("unknown invitation link")
        query = select(readers).where(readers.c.token_hash == hash_token(token))
        if conn is None:
            with self._tx() as c:
                row = c.execute(query).mappings().first()
        else:
            row = conn.execute(query.with_for_update()).mappings().first()
        if row is None:
            raise UnknownReader("unknown invitation link")
        if row["revoked_at"] is not None:
            raise RevokedReader("this invitation link was revoked; please contact the study coordinator")
        return _reader(row)

    def consent(self, token: str) -> Reader:
        """Record that the reader accepted the consent/instructions page (first time only)."""
        with self._tx() as conn:
            reader = self.reader_by_token(token, conn)
            if reader.consented_at is None:
                conn.execute(
                    readers.update().where(readers.c.id == reader.id).values(consented_at=time.time())
                )
        return self.get_reader(reader.id)

    # ----- answers -------------------------------------------------------------------------------
    def answers_of(self, reader_id: int) -> dict[str, dict[str, Any]]:
        """This reader's answers by image key."""
        with self._tx() as conn:
            rows = conn.execute(select(answers).where(answers.c.reader_id == reader_id)).mappings().all()
        return {r["image_key"]: dict(r) for r in rows}

    def next_position(self, reader: Reader, answered: dict[str, Any] | None = None) -> int:
        """First position without an answer (== number of images when the reader is done)."""
        answered = self.answers_of(reader.id) if answered is None else answered
        for pos, key in enumerate(reader.order):
            if key not in answered:
                return pos
        return len(reader.order)

    def mark_shown(self, reader: Reader, key: str) -> None:
        """Record that the server sent image ``key`` to the reader now (server-side response time)."""
        if key not in reader.order:
            raise NotInSet("image not in this reader's set")
        now = time.time()
        for attempt in range(2):
            try:
                with self._tx() as conn:
                    n = conn.execute(
                        presentations.update()
                        .where(presentations.c.reader_id == reader.id, presentations.c.image_key == key)
                        .values(last_shown_at=now, shows=presentations.c.shows + 1)
                    ).rowcount
                    if n == 0:
                        conn.execute(
                            presentations.insert().values(
                                reader_id=reader.id,
                                image_key=key,
                                first_shown_at=now,
                                last_shown_at=now,
                                shows=1,
                            )
                        )
                return
            except IntegrityError:  # a concurrent first show (PostgreSQL): update instead
                if attempt:
                    raise

    def submit(
        self,
        token: str,
        image_key: str,
        answer: str,
        confidence: int | None,
        submission_id: str,
        client_ms: float | None = None,
    ) -> SubmitResult:
        """Store one answer atomically; raises a StudyRequestError (nothing stored) when refused."""
        if not isinstance(submission_id, str) or not SUBMISSION_ID_RE.match(submission_id):
            raise InvalidAnswer("submission_id must be 8-64 characters from A-Z a-z 0-9 _ -")
        if answer not in self._choices:
            raise InvalidAnswer(f"answer must be one of {sorted(self._choices)}")
        mode = self.study.confidence
        if confidence is not None and confidence not in CONFIDENCE_LEVELS:
            raise InvalidAnswer("confidence must be an integer from 1 to 5")
        if mode == "required" and confidence is None:
            raise InvalidAnswer("this study asks for a confidence rating (1-5) with every answer")
        if mode == "off" and confidence is not None:
            raise InvalidAnswer("this study does not ask for confidence ratings")
        if client_ms is not None and not (0 <= client_ms < 7 * 24 * 3600 * 1000):
            raise InvalidAnswer("client_ms must be a non-negative number of milliseconds")
        for attempt in range(3):
            try:
                return self._submit_tx(token, image_key, answer, confidence, submission_id, client_ms)
            except IntegrityError:  # a racing duplicate on PostgreSQL: the retry sees the committed row
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _submit_tx(
        self, token: str, key: str, answer: str, confidence: int | None, sid: str, client_ms: float | None
    ) -> SubmitResult:
        now = time.time()
        with self._tx() as conn:
            reader = self.reader_by_token(token, conn)  # row lock on PostgreSQL, BEGIN IMMEDIATE on SQLite
            if key not in reader.order:
                raise NotInSet("image not in this reader's set")
            position = reader.order.index(key)
            prev_sub = (
                conn.execute(
                    select(submissions).where(
                        submissions.c.reader_id == reader.id, submissions.c.submission_id == sid
                    )
                )
                .mappings()
                .first()
            )
            if prev_sub is not None:
                same = (prev_sub["image_key"], prev_sub["answer"], prev_sub["confidence"]) == (
                    key,
                    answer,
                    confidence,
                )
                if not same:
                    raise AnswerConflict("this submission id was already used for a different answer")
                return SubmitResult("duplicate", position, answer, confidence)
            shown = conn.execute(
                select(presentations.c.last_shown_at).where(
                    presentations.c.reader_id == reader.id, presentations.c.image_key == key
                )
            ).scalar()
            if shown is None:
                raise AnswerConflict("this image has not been shown to the reader yet")
            server_ms = max(0.0, (now - shown) * 1000.0)
            existing = (
                conn.execute(
                    select(answers).where(answers.c.reader_id == reader.id, answers.c.image_key == key)
                )
                .mappings()
                .first()
            )
            if existing is None:
                conn.execute(
                    answers.insert().values(
                        reader_id=reader.id,
                        image_key=key,
                        position=position,
                        answer=answer,
                        confidence=confidence,
                        client_ms=client_ms,
                        server_ms=server_ms,
                        shown_at=shown,
                        answered_at=now,
                        updated_at=now,
                        submission_id=sid,
                        n_changes=0,
                    )
                )
                status = "stored"
            elif (existing["answer"], existing["confidence"]) == (answer, confidence):
                status = "unchanged"
            elif not self.study.allow_change:
                raise AnswerConflict("this image was already answered and this study does not allow changes")
            else:
                conn.execute(
                    answer_changes.insert().values(
                        reader_id=reader.id,
                        image_key=key,
                        old_answer=existing["answer"],
                        old_confidence=existing["confidence"],
                        new_answer=answer,
                        new_confidence=confidence,
                        submission_id=sid,
                        client_ms=client_ms,
                        server_ms=server_ms,
                        changed_at=now,
                    )
                )
                conn.execute(
                    answers.update()
                    .where(answers.c.id == existing["id"])
                    .values(
                        answer=answer,
                        confidence=confidence,
                        updated_at=now,
                        submission_id=sid,
                        n_changes=answers.c.n_changes + 1,
                    )
                )
                status = "changed"
            conn.execute(
                submissions.insert().values(
                    reader_id=reader.id,
                    submission_id=sid,
                    image_key=key,
                    answer=answer,
                    confidence=confidence,
                    status=status,
                    received_at=now,
                )
            )
        return SubmitResult(status, position, answer, confidence)

    # ----- coordinator views ---------------------------------------------------------------------
    def progress(self) -> list[dict[str, Any]]:
        """Per reader: answered / total, changes, last activity, status."""
        with self._tx() as conn:
            counts: dict[int, int] = dict(
                conn.execute(select(answers.c.reader_id, func.count()).group_by(answers.c.reader_id)).all()
            )
            changes: dict[int, int] = dict(
                conn.execute(
                    select(answer_changes.c.reader_id, func.count()).group_by(answer_changes.c.reader_id)
                ).all()
            )
            last = dict(
                conn.execute(
                    select(answers.c.reader_id, func.max(answers.c.updated_at)).group_by(answers.c.reader_id)
                ).all()
            )
        out = []
        for r in self.list_readers():
            out.append(
                {
                    "id": r.id,
                    "name": r.name,
                    "role": r.role,
                    "years_experience": r.years_experience,
                    "answered": int(counts.get(r.id, 0)),
                    "total": len(r.order),
                    "changes": int(changes.get(r.id, 0)),
                    "last_activity": _iso(last.get(r.id)),
                    "created_at": _iso(r.created_at),
                    "consented": r.consented_at is not None,
                    "status": "revoked"
                    if r.revoked_at is not None
                    else ("done" if counts.get(r.id, 0) >= len(r.order) else "active"),
                }
            )
        return out

    def export_rows(self) -> list[dict[str, Any]]:
        """One row per (reader, image answered), joined with the hidden manifest."""
        images = self.study.by_key()
        choice_labels = {c["value"]: c["label"] for c in self.study.choices}
        with self._tx() as conn:
            rows = (
                conn.execute(select(answers).order_by(answers.c.reader_id, answers.c.position))
                .mappings()
                .all()
            )
        by_id = {r.id: r for r in self.list_readers()}
        out = []
        for a in rows:
            r, im = by_id[a["reader_id"]], images.get(a["image_key"])
            out.append(
                {
                    "reader_id": r.id,
                    "reader": r.name,
                    "role": r.role,
                    "years_experience": r.years_experience,
                    "position": a["position"] + 1,
                    "image": a["image_key"],
                    "image_name": im.file if im else "",
                    "source_image_id": im.source_image_id if im else "",
                    "ground_truth": im.ground_truth if im else "",
                    "condition": im.condition if im else "",
                    "attack": im.attack if im else "",
                    "answer": a["answer"],
                    "answer_label": choice_labels.get(a["answer"], a["answer"]),
                    "correct": int(im is not None and a["answer"] == im.ground_truth),
                    "confidence": a["confidence"],
                    "client_ms": a["client_ms"],
                    "server_ms": a["server_ms"],
                    "shown_at": _iso(a["shown_at"]),
                    "answered_at": _iso(a["answered_at"]),
                    "updated_at": _iso(a["updated_at"]),
                    "n_changes": a["n_changes"],
                    "submission_id": a["submission_id"],
                }
            )
        return out

    def changes(self) -> list[dict[str, Any]]:
        """The answer_changes log."""
        with self._tx() as conn:
            rows = conn.execute(select(answer_changes).order_by(answer_changes.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def change_rows(self) -> list[dict[str, Any]]:
        """The answer_changes log joined with readers and the hidden manifest (CHANGE_COLUMNS)."""
        images = self.study.by_key()
        by_id = {r.id: r for r in self.list_readers()}
        out = []
        for c in self.changes():
            r, im = by_id[c["reader_id"]], images.get(c["image_key"])
            out.append(
                {
                    "change_id": c["id"],
                    "reader_id": r.id,
                    "reader": r.name,
                    "position": r.order.index(c["image_key"]) + 1 if c["image_key"] in r.order else "",
                    "image": c["image_key"],
                    "image_name": im.file if im else "",
                    "ground_truth": im.ground_truth if im else "",
                    "condition": im.condition if im else "",
                    "attack": im.attack if im else "",
                    "old_answer": c["old_answer"],
                    "old_confidence": c["old_confidence"],
                    "new_answer": c["new_answer"],
                    "new_confidence": c["new_confidence"],
                    "client_ms": c["client_ms"],
                    "server_ms": c["server_ms"],
                    "changed_at": _iso(c["changed_at"]),
                    "submission_id": c["submission_id"],
                }
            )
        return out


EXPORT_COLUMNS: tuple[str, ...] = (
    "reader_id",
    "reader",
    "role",
    "years_experience",
    "position",
    "image",
    "image_name",
    "source_image_id",
    "ground_truth",
    "condition",
    "attack",
    "answer",
    "answer_label",
    "correct",
    "confidence",
    "client_ms",
    "server_ms",
    "shown_at",
    "answered_at",
    "updated_at",
    "n_changes",
    "submission_id",
)


CHANGE_COLUMNS: tuple[str, ...] = (
    "change_id",
    "reader_id",
    "reader",
    "position",
    "image",
    "image_name",
    "ground_truth",
    "condition",
    "attack",
    "old_answer",
    "old_confidence",
    "new_answer",
    "new_confidence",
    "client_ms",
    "server_ms",
    "changed_at",
    "submission_id",
)


def _iso(t: float | None) -> str:
    if t is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1000):03d}Z"


def _reader(row: Any) -> Reader:
    return Reader(
        id=int(row["id"]),
        name=row["name"],
        role=row["role"] or "",
        years_experience=row["years_experience"],
        seed=int(row["seed"]),
        order=tuple(json.loads(row["order_json"])),
        created_at=row["created_at"],
        consented_at=row["consented_at"],
        revoked_at=row["revoked_at"],
    )


def neutralise_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: strings starting like a formula get a leading ``'``.

    Numbers are left alone (``-3`` stays a number); text such as ``=HYPERLINK(...)``, ``+1``, ``@SUM``
    or one starting with a tab or carriage return becomes ``'=HYPERLINK(...)`` (OWASP CSV injection).
    """
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_text(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Rows as CSV text with ``columns``; None as empty cells, formula-like text neutralised."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else neutralise_cell(r.get(k)) for k in columns})
    return buf.getvalue()


def export_csv_text(rows: list[dict[str, Any]]) -> str:
    """The full answers export as CSV text."""
    return csv_text(rows, EXPORT_COLUMNS)


def changes_csv_text(rows: list[dict[str, Any]]) -> str:
    """The answer-changes log (:meth:`AnswerStore.change_rows`) as CSV text."""
    return csv_text(rows, CHANGE_COLUMNS)


def original_csv_text(rows: list[dict[str, Any]], reader_id: int) -> str:
    """One reader's answers in the study's original two-column layout (Image_name, Diagnosis)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["Image_name", "Diagnosis"])
    for r in rows:
        if r["reader_id"] == reader_id:
            w.writerow([neutralise_cell(r["image_name"]), neutralise_cell(r["answer_label"])])
    return buf.getvalue()
