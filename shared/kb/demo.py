"""The knowledge-base demo of ``make up``: a source database ``orders_db`` (a SQLite file
beside the local database) with an ``orders`` table of a few hundred rows, and an empty
knowledge base ``orders_kb``, so that the Smart DB seed's examples work as written."""

from __future__ import annotations

import random
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.kb import knowledge, sources
from shared.kb.models import DataSource, KnowledgeBase

CATALOGUE = [
    ("Espresso machine", "15-bar pump espresso maker with a steam wand for milk"),
    ("Burr coffee grinder", "conical burr grinder with 40 settings from espresso to French press"),
    ("Electric kettle", "1.7 litre stainless steel kettle with temperature control for tea"),
    ("Cast iron skillet", "pre-seasoned 12 inch frying pan for the stove, the oven and the grill"),
    ("Chef's knife", "8 inch German steel kitchen knife, full tang, for chopping and slicing"),
    ("Stand mixer", "5 quart tilt-head mixer with a dough hook, whisk and flat beater"),
    ("Running shoes", "lightweight road running shoes with a cushioned foam sole"),
    ("Trail running shoes", "grippy trail shoes with a rock plate for muddy mountain paths"),
    ("Yoga mat", "non-slip 6 mm exercise mat for yoga, pilates and stretching"),
    ("Adjustable dumbbells", "pair of dumbbells from 2 to 24 kg with a quick dial"),
    ("Hiking backpack", "40 litre waterproof backpack with a rain cover for multi-day hikes"),
    ("Down sleeping bag", "three-season mummy sleeping bag rated to -5 degrees Celsius"),
    ("Camping tent", "two-person lightweight tent that pitches in five minutes"),
    ("Noise-cancelling headphones", "wireless over-ear headphones with 30 hours of battery"),
    ("Bluetooth speaker", "waterproof portable speaker with deep bass for the beach"),
    ("Mechanical keyboard", "tenkeyless keyboard with tactile switches and a USB-C cable"),
    ("Wireless mouse", "ergonomic silent mouse with a rechargeable battery"),
    ("4K monitor", "27 inch IPS display with USB-C power delivery for a laptop"),
    ("Laptop stand", "aluminium stand that raises a laptop screen to eye level"),
    ("Smartwatch", "fitness watch with GPS, heart-rate monitor and sleep tracking"),
    ("E-reader", "glare-free 7 inch e-ink reader with a warm front light"),
    ("Robot vacuum", "self-emptying robot vacuum cleaner that maps the whole house"),
    ("Air purifier", "HEPA air purifier for rooms up to 40 square metres, quiet at night"),
    ("Desk lamp", "dimmable LED desk lamp with a wireless phone charger in its base"),
    ("Office chair", "ergonomic mesh office chair with lumbar support and 4D armrests"),
    ("Standing desk", "electric height-adjustable desk with a memory keypad"),
    ("Rain jacket", "breathable waterproof shell jacket with taped seams and a hood"),
    ("Wool socks", "merino wool hiking socks, cushioned, that keep feet dry"),
    ("Sunglasses", "polarised sunglasses with UV400 protection for driving"),
    ("Water bottle", "insulated steel bottle that keeps drinks cold for 24 hours"),
]
COLOURS = ["black", "white", "red", "blue", "green", "grey", "navy", "sand", "olive", "silver"]
ORDERS = 300


def write_orders_file(path: Path, now: datetime) -> None:
    """The ``orders`` table (id, product, description, created_at), made once: 300 orders
    over the last 30 days (the same on every machine)."""
    if path.exists():
        return
    rng = random.Random(7)
    rows = []
    for order_id in range(1, ORDERS + 1):
        product, description = CATALOGUE[(order_id - 1) % len(CATALOGUE)]
        colour = COLOURS[(order_id - 1) // len(CATALOGUE) % len(COLOURS)]
        created = now - timedelta(days=30) + timedelta(minutes=order_id * 144 + rng.randint(0, 60))
        rows.append(
            (
                order_id,
                f"{product} ({colour})",
                f"A {colour} {description}. Quantity {rng.randint(1, 4)}.",
                created.strftime("%Y-%m-%d %H:%M:%S"),
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, product TEXT NOT NULL, "
            "description TEXT, created_at TIMESTAMP NOT NULL)"
        )
        connection.execute("CREATE INDEX orders_created_at ON orders (created_at)")
        connection.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", rows)
    connection.close()


def seed_orders_demo(session: Session, organisation_id: uuid.UUID, folder: Path) -> list[str]:
    """``orders_db`` and ``orders_kb`` for the organisation, if it has neither yet
    (registering a SQLite source needs JOBYARD_ALLOW_PRIVATE_URLS, as ``make up`` sets).
    Returns what it created."""
    created = []
    path = (folder / "orders.db").resolve()
    write_orders_file(path, datetime.now(UTC).replace(tzinfo=None, microsecond=0))
    has_source = session.scalar(
        select(DataSource.id).where(
            DataSource.organisation_id == organisation_id, DataSource.name == "orders_db"
        )
    )
    if has_source is None:
        sources.register(session, organisation_id, "orders_db", f"sqlite:///{path}")
        created.append("orders_db")
    has_kb = session.scalar(
        select(KnowledgeBase.id).where(
            KnowledgeBase.organisation_id == organisation_id, KnowledgeBase.name == "orders_kb"
        )
    )
    if has_kb is None:
        knowledge.create_kb(
            session,
            organisation_id,
            name="orders_kb",
            embedder_name="hashing",
            id_column=None,
            metadata_columns=[],
        )
        created.append("orders_kb")
    return created
