"""Write synthetic transaction files in the challenge's format, for scale tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

HEADER = "id;description;amount;timestamp;merchant;operation_type;side"
MERCHANTS = (
    "EDF",
    "Amazon.fr",
    "Darty",
    "La Poste",
    "Bouygues",
    "Lidl",
    "TotalEnergies",
    "Deliveroo",
    "SNCF",
    "Auchan",
    "Carrefour",
    "Fnac",
    "Uber",
    "Orange",
    "Free",
    "Decathlon",
)
OPERATIONS = ("payment", "direct_debit", "transfer", "refund")
DESCRIPTIONS = ("Card expense at {m}", "Purchase at {m}", "Receipt from {m}", "Refund from {m}")


def generate(path: Path, rows: int, seed: int = 42) -> int:
    """Write `rows` rows (ids 1..rows) to `path`, deterministically for a given seed."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        for number in range(1, rows + 1):
            merchant = rng.choice(MERCHANTS)
            side = "debit" if rng.random() < 0.65 else "credit"
            cents = rng.randint(1, 200_000) * (-1 if side == "debit" else 1)
            amount = f"{cents // 100 if cents >= 0 else -((-cents) // 100)},{abs(cents) % 100:02d}"
            moment = start + timedelta(seconds=rng.randint(0, 400 * 86400))
            description = rng.choice(DESCRIPTIONS).format(m=merchant)
            out.write(
                f'\n{number};"{description}";{amount};"{moment:%Y-%m-%d %H:%M:%S}";'
                f'"{merchant}";"{rng.choice(OPERATIONS)}";"{side}"'
            )
    return rows
