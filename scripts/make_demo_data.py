#!/usr/bin/env python3
"""Build the demo's synthetic customer-support intent data, deterministically.

Why this exists: `make demo` fine-tunes a tiny random-initialised model on the
local CPU in about a minute, with no network. It needs a task such a model can
measurably learn in that time, with a held-out eval suite whose score goes from
~0 before training to high after. This script writes that task:

  data/support.jsonl            training rows, OpenAI "messages" format
                                ({"messages": [system, user, assistant]})
  evals/support-intents.jsonl   eval rows: {"id", "messages" (system + user,
                                no answer), "expected"}
  evals/support-intents.yaml    the eval suite (name, data, generation, metrics)

The task: map a customer's message to one of six intent labels. Each message is
built from templated parts (greeting + request + sign-off) with slot values
(products, order numbers, cities, amounts). The eval rows use slot values that
never occur in training (a held-out pool of products, cities, e-mail names and
number ranges), 2 of every 12 eval phrasings per intent are never used in
training, and no eval message text occurs in the training file, so a high score
means the model generalised the phrasing -> intent mapping rather than
memorising rows.

Everything is derived from a fixed seed with Python's `random.Random`, so the
output is byte-identical on every run (the files are committed; this script is
how they were made and how to change them).

Usage:
    python scripts/make_demo_data.py [--root .] [--train-per-intent 120] [--eval-per-intent 16] [--seed 1234]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYSTEM = "Classify the customer message. Reply with one intent label."

# intent -> request templates. Slots: {product} {order} {city} {email} {amount}
INTENTS: dict[str, list[str]] = {
    "track_order": [
        "where is my order {order}?",
        "has my {product} shipped yet?",
        "can you give me the tracking number for order {order}?",
        "when will my {product} arrive?",
        "my package with the {product} is late, where is it?",
        "what is the delivery status of order {order}?",
        "is order {order} on its way?",
        "I am still waiting for my {product}, when does it get here?",
        "the tracking page for order {order} has not changed in days.",
        "how long until the {product} is delivered?",
    ],
    "cancel_order": [
        "please cancel order {order}.",
        "I want to cancel my {product} order.",
        "cancel the {product} before it ships.",
        "I changed my mind, cancel order {order}.",
        "stop order {order}, I do not want it anymore.",
        "how do I cancel the order for the {product}?",
        "I ordered the {product} by mistake, please cancel it.",
        "can you cancel order {order} right away?",
        "do not send the {product}, cancel my order.",
        "I need to cancel order {order} today.",
    ],
    "refund": [
        "I want my money back for the {product}.",
        "how do I get a refund for order {order}?",
        "the {product} arrived broken, I want a refund.",
        "I returned the {product}, where is my refund?",
        "please refund order {order}.",
        "the {product} does not work, refund me please.",
        "I sent back order {order} but got no refund yet.",
        "can I get a refund on the {product}?",
        "refund the {amount} dollars for order {order}.",
        "the {product} was not as described, I want a refund.",
    ],
    "change_address": [
        "I moved to {city}, please update my shipping address.",
        "ship order {order} to my new address in {city} instead.",
        "can I change the delivery address for the {product}?",
        "wrong address on order {order}, it should go to {city}.",
        "please send the {product} to my office in {city}.",
        "update the address on my account, I live in {city} now.",
        "I need to change where order {order} is delivered.",
        "the {product} should be shipped to {city}, not my old place.",
        "how do I edit the shipping address for order {order}?",
        "change my address to {city} before the {product} ships.",
    ],
    "reset_password": [
        "I forgot my password.",
        "I can not log in to my account {email}.",
        "the reset password link is not working.",
        "please reset the password for {email}.",
        "my account {email} is locked, help me log in.",
        "how do I change my password?",
        "I never got the password reset email at {email}.",
        "my login does not work anymore.",
        "I keep getting wrong password when I sign in.",
        "send a new password reset link to {email}.",
    ],
    "billing": [
        "I was charged twice for the {product}.",
        "why is there a charge of {amount} dollars on my card?",
        "please update my credit card details.",
        "my invoice for order {order} is wrong.",
        "I see an extra fee of {amount} dollars on my bill.",
        "can I pay for the {product} in installments?",
        "my card was declined for order {order}.",
        "I need a copy of the invoice for the {product}.",
        "you billed me {amount} dollars but the price was lower.",
        "which payment methods do you accept?",
    ],
}

# Phrasings that occur only in the eval suite (never in training): the model has
# to carry what it learned from the words it has seen to a new sentence.
EVAL_ONLY_TEMPLATES: dict[str, list[str]] = {
    "track_order": [
        "any news on the shipment of order {order}?",
        "did the {product} leave the warehouse yet?",
    ],
    "cancel_order": [
        "I no longer need the {product}, please cancel.",
        "do not process order {order}, cancel it.",
    ],
    "refund": [
        "the {product} broke after one day, I would like a refund.",
        "give me my money back for order {order}.",
    ],
    "change_address": [
        "my address changed, send order {order} to {city}.",
        "deliver the {product} to {city} please.",
    ],
    "reset_password": [
        "help, I am locked out of my account.",
        "the password for {email} does not work.",
    ],
    "billing": [
        "there is a wrong charge on my card for order {order}.",
        "my bill shows {amount} dollars too much.",
    ],
}

GREETINGS = [
    "",
    "Hi, ",
    "Hello, ",
    "Hey, ",
    "Good morning. ",
    "Hi there! ",
    "Hello team, ",
    "Excuse me, ",
]

SIGNOFFS = [
    "",
    " Thanks.",
    " Thank you!",
    " Please help.",
    " Thanks in advance.",
    " This is urgent.",
]

# Slot pools: (training pool, held-out eval pool). Disjoint by construction.
PRODUCTS = (
    [
        "blue kettle",
        "desk lamp",
        "yoga mat",
        "phone case",
        "coffee grinder",
        "running shoes",
        "wool scarf",
        "gaming mouse",
        "office chair",
        "water bottle",
        "laptop stand",
        "rain jacket",
        "toaster",
        "backpack",
        "headphones",
        "air fryer",
        "bike helmet",
        "mixing bowl",
        "wall clock",
        "sleeping bag",
    ],
    [
        "garden hose",
        "tea set",
        "winter boots",
        "standing desk",
        "camera bag",
        "picture frame",
        "bath towel",
        "smart watch",
    ],
)
CITIES = (
    [
        "Boston",
        "Denver",
        "Austin",
        "Seattle",
        "Chicago",
        "Portland",
        "Miami",
        "Atlanta",
        "Dallas",
        "Phoenix",
        "Detroit",
        "Madison",
    ],
    ["Oakland", "Tucson", "Raleigh", "Omaha", "Fresno"],
)
EMAIL_NAMES = (
    ["anna", "ben", "carla", "dev", "emma", "farid", "grace", "hugo", "ivy", "jonas"],
    ["kira", "liam", "mona", "nils", "omar"],
)
EMAIL_DOMAINS = ["mail.com", "example.org", "inbox.net"]


def _order(rng: random.Random, held_out: bool) -> str:
    # Training orders are 5-digit numbers starting 1-6, eval orders start 7-9.
    first = rng.choice("789" if held_out else "123456")
    return "#" + first + "".join(rng.choice("0123456789") for _ in range(4))


def _amount(rng: random.Random, held_out: bool) -> str:
    return str(rng.randint(100, 199) if held_out else rng.randint(5, 99))


def _fill(template: str, rng: random.Random, held_out: bool) -> str:
    pool = 1 if held_out else 0
    values = {
        "product": rng.choice(PRODUCTS[pool]),
        "order": _order(rng, held_out),
        "city": rng.choice(CITIES[pool]),
        "email": rng.choice(EMAIL_NAMES[pool]) + "@" + rng.choice(EMAIL_DOMAINS),
        "amount": _amount(rng, held_out),
    }
    return template.format(**values)


def _message(template: str, rng: random.Random, held_out: bool) -> str:
    request = _fill(template, rng, held_out)
    greeting = rng.choice(GREETINGS)
    if not greeting or greeting.endswith((". ", "! ")):
        request = request[0].upper() + request[1:]
    text = greeting + request
    return text + rng.choice(SIGNOFFS)


def build(train_per_intent: int, eval_per_intent: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train: list[dict] = []
    evals: list[dict] = []
    seen: set[str] = set()

    # Eval rows first (held-out slot values; all training phrasings plus the
    # eval-only ones), so training can avoid their texts.
    for intent, train_templates in INTENTS.items():
        templates = train_templates + EVAL_ONLY_TEMPLATES[intent]
        count = 0
        while count < eval_per_intent:
            text = _message(templates[count % len(templates)], rng, held_out=True)
            if text in seen:
                continue
            seen.add(text)
            count += 1
            evals.append({"intent": intent, "text": text})

    for intent, templates in INTENTS.items():
        count = 0
        while count < train_per_intent:
            text = _message(templates[count % len(templates)], rng, held_out=False)
            if text in seen:
                continue
            seen.add(text)
            count += 1
            train.append({"intent": intent, "text": text})

    rng.shuffle(train)
    rng.shuffle(evals)

    train_rows = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": row["text"]},
                {"role": "assistant", "content": row["intent"]},
            ]
        }
        for row in train
    ]
    eval_rows = [
        {
            "id": f"support-{i + 1:03d}",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": row["text"]},
            ],
            "expected": row["intent"],
        }
        for i, row in enumerate(evals)
    ]
    return train_rows, eval_rows


SUITE_YAML = """\
# Held-out intent-classification prompts for the demo run (made by scripts/make_demo_data.py).
# Slot values (products, cities, e-mails, order numbers, amounts) never occur in data/support.jsonl,
# and 2 of the 12 phrasings per intent are eval-only.
name: support-intents
data: evals/support-intents.jsonl
generation:
  max_new_tokens: 8
  do_sample: false
metrics: [exact_match]
"""


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root to write into")
    parser.add_argument("--train-per-intent", type=int, default=120)
    parser.add_argument("--eval-per-intent", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    train_rows, eval_rows = build(args.train_per_intent, args.eval_per_intent, args.seed)

    train_texts = {r["messages"][1]["content"] for r in train_rows}
    assert not any(r["messages"][1]["content"] in train_texts for r in eval_rows), "eval leaked into train"

    _write_jsonl(args.root / "data" / "support.jsonl", train_rows)
    _write_jsonl(args.root / "evals" / "support-intents.jsonl", eval_rows)
    (args.root / "evals" / "support-intents.yaml").write_text(SUITE_YAML, encoding="utf-8", newline="\n")
    print(f"wrote {len(train_rows)} training rows, {len(eval_rows)} eval rows")


if __name__ == "__main__":
    main()
