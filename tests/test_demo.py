"""The main job (`koppel demo`) end to end: a small batch, its report, and nothing left running."""

from __future__ import annotations

import io
import os
import re
import stat

import pytest
from rich.console import Console

from gateway.cli import main
from gateway.demo import run_demo
from gateway.vault import KEY_VAR


def children() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                        found.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


@pytest.mark.integration
def test_the_demo_runs_the_whole_pair_reports_it_and_leaves_nothing_running(tmp_path):
    before = children()
    out = io.StringIO()
    code = run_demo(orders=6, data_dir=tmp_path, console=Console(file=out, width=120, color_system=None))
    text = out.getvalue()
    assert code == 0, text
    placed = int(re.search(r"orders placed in the shop\s+(\d+)", text).group(1))
    created = int(re.search(r"orders created in Exact\s+(\d+)", text).group(1))
    failed = int(re.search(r"orders failed\s+(\d+)", text).group(1))
    assert placed == 6 and created + failed == 6
    # Per order and per delivery: each order is delivered twice, so a failed order is two failed jobs.
    assert re.search(r"webhook deliveries accepted +12/12 +2 per order: order.created \+ order.updated", text), text
    assert "1 duplicate, no second job" in text and "401  bad_signature" in text
    if failed:
        assert "KOP-BON-25 do not exist as items in Exact Online" in text
        # a failed order is one job, or two: its two events are one job when they waited in the inbox together
        jobs = int(re.search(r"their (\d+) job\(s\) kept in RQ's failed registry", text).group(1))
        assert failed <= jobs <= 2 * failed, text
        flat = " ".join(text.split())  # the console wraps long lines
        assert f"requeued {jobs} failed job(s): one per delivery or merged pair, " in flat
        assert f"of the {failed} failed order(s)" in flat
        assert f"after the replay: {failed} of {failed} order(s) booked in Exact" in text
    assert "created webhook" in text and "for product.created" in text  # koppel endpoints sync
    assert "12 of the shop's 13 SKUs are now items in Exact" in text and ": KOP-BON-25" in text
    assert "now says: Utrecht" in text  # the customer's move reached the Exact account
    assert "re-activated webhook" in text and "3 of 3 missed orders booked in Exact" in text
    assert re.search(r"KOP-TASSE-BL: available in Exact (\d+), in the shop \1\n", text), text
    assert re.search(r"(\d) of \1 shop orders now 'completed'", text), text  # written back via the poller
    assert "every order is accounted for" in text
    assert children() <= before, "the demo left child processes running"
    # The gateway's log: its start, the refused delivery (one line, no payload), and no access log.
    log = (tmp_path / "logs" / "gateway.log").read_text()
    assert "Application startup complete" in log and "webhooks at /webhooks/{endpoint}: webshop (woocommerce)" in log
    refused = [line for line in log.splitlines() if "rejected" in line]
    assert len(refused) == 1 and "bad_signature request to endpoint webshop" in refused[0], log
    assert not re.search(r"[\w.%+-]+@[\w-]+(\.[\w-]+)+", log), log  # no e-mail address (Redis: redis://:***@…)
    assert "billing" not in log and "POST /webhooks" not in log, log


@pytest.mark.integration
def test_the_main_job_runs_twice_on_the_same_data_directory(tmp_path, monkeypatch):
    """A second run finds the first one's Redis files, logs and config, removes them and starts empty; a file
    of the user's in the directory stays. With no KOPPEL_SECRET_KEY set up, the stack makes its own key; what
    it writes is its owner's only, and no token is readable in Redis's files."""
    monkeypatch.delenv(KEY_VAR)
    (tmp_path / "notes.txt").write_text("mine")
    for run in (1, 2):
        out = io.StringIO()
        code = run_demo(orders=3, data_dir=tmp_path, console=Console(file=out, width=120, color_system=None))
        text = out.getvalue()
        assert code == 0, f"run {run}:\n{text}"
        assert "every order is accounted for" in text
        assert re.search(r"orders placed in the shop +3\b", text), text
        assert re.search(r"webhook deliveries accepted +6/6\b", text), text  # this run's orders only
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "logs" / "gateway.log").read_text().count("Application startup complete") == 1
    made = [tmp_path, *(path for path in tmp_path.rglob("*") if path.name != "notes.txt")]
    assert {"secret.key", "stack.toml", "gateway.log", "dump.rdb", "password"} <= {path.name for path in made}
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"
    aof = b"".join(path.read_bytes() for path in (tmp_path / "redis" / "appendonlydir").iterdir())
    assert b"koppel:exact:tokens:exact" in aof and b"refresh_token" not in aof  # stored, encrypted
    assert KEY_VAR not in os.environ  # the stack's own key went with it


def test_the_demo_refuses_a_batch_size_out_of_range(capsys):
    assert main(["demo", "--orders", "0"]) == 2
    assert "--orders must be between 1 and 5000" in capsys.readouterr().err


def run_pair(pair: str, tmp_path, records: int = 3) -> tuple[int, str]:
    out = io.StringIO()
    code = run_demo(orders=records, data_dir=tmp_path, console=Console(file=out, width=160, color_system=None),
                    pair=pair)  # fmt: skip
    return code, out.getvalue()


def report(text: str, title: str) -> str:
    """The report table of the phase titled `title`: its title line, then its rows (indented) up to a blank line."""
    found = re.search(rf"^{re.escape(title)} *\n((?: .+\n)+)", text, re.MULTILINE)
    assert found, f"no report titled {title!r} in:\n{text}"
    return found.group(1)


def figure(table: str, label: str) -> str:
    found = re.search(rf"^ *{re.escape(label)} +(\d+(?:\.\d\d)?)(?: |$)", table, re.MULTILINE)
    assert found, f"no {label!r} in:\n{table}"
    return found.group(1)


def accounted(text: str, title: str, entered: str, outcome: str, count: int) -> str:
    """The phase's table, asserting `count` records entered, all of them `outcome`, none skipped or failed."""
    table = report(text, title)
    target = title.split(" → ")[-1]
    assert figure(table, entered) == str(count), table
    assert figure(table, f"{outcome} in {target}") == str(count), table
    assert figure(table, "skipped") == "0" and figure(table, "failed") == "0", table
    return table


@pytest.mark.integration
def test_the_winstore_exact_pair_runs_every_flow_of_the_pair(tmp_path):
    before = children()
    code, text = run_pair("winstore-exactonline", tmp_path)
    assert code == 0, text
    assert "Winstore ⇄ Exact Online" in text and "Exact Online sandbox, authorised via OAuth" in text
    articles = accounted(text, "articles Winstore → Exact Online", "articles entered in Winstore", "created", 3)
    assert re.search(r"Exact Online API calls per article +\d+\.\d\d", articles), articles
    orders = accounted(text, "orders Winstore → Exact Online", "orders rung up in Winstore", "created", 3)
    assert re.search(r"Exact Online API calls per order +\d+\.\d\d", orders), orders
    back = accounted(text, "orders Exact Online → Winstore", "orders entered in Exact Online", "created", 3)
    assert re.search(r"Winstore API calls per order +\d+\.\d\d", back), back
    accounted(text, "order status Exact Online → Winstore", "orders delivered in Exact Online", "updated", 3)
    stock = accounted(text, "stock Exact Online → Winstore", "stock levels counted in Exact Online", "updated", 3)
    assert re.search(r"Winstore API calls per stock level +\d+\.\d\d", stock), stock
    assert "not in" not in text and "differs" not in text and "without status" not in text  # the cross-checks
    assert "every order is accounted for" in text
    assert children() <= before, "the demo left child processes running"


@pytest.mark.integration
def test_the_winstore_business_central_pair_runs_every_flow_of_the_pair(tmp_path):
    before = children()
    code, text = run_pair("winstore-businesscentral", tmp_path)
    assert code == 0, text
    assert "created webhook" in text and "for salesOrders" in text  # BC's subscription, through the handshake
    articles = accounted(text, "articles Winstore → Business Central", "articles entered in Winstore", "created", 3)
    assert re.search(r"Business Central API calls per article +\d+\.\d\d", articles), articles
    customers = accounted(text, "customers Winstore → Business Central", "customers entered in Winstore", "created", 3)
    assert re.search(r"Business Central API calls per customer +\d+\.\d\d", customers), customers
    orders = accounted(text, "orders Winstore → Business Central", "orders rung up in Winstore", "created", 3)
    assert re.search(r"Business Central API calls per order +\d+\.\d\d", orders), orders
    accounted(text, "order status Business Central → Winstore", "orders released in Business Central", "updated", 3)
    accounted(text, "orders Business Central → Winstore", "orders entered in Business Central", "created", 3)
    accounted(text, "stock Business Central → Winstore", "stock levels posted in Business Central", "updated", 3)
    assert "not in" not in text and "differs" not in text and "without status" not in text  # the cross-checks
    assert "every order is accounted for" in text
    assert children() <= before, "the demo left child processes running"


@pytest.mark.integration
def test_the_exact_asperion_pair_publishes_exacts_items_and_books_orders_both_ways(tmp_path):
    before = children()
    code, text = run_pair("exactonline-asperion", tmp_path)
    assert code == 0, text
    assert "Exact Online ⇄ Asperion" in text and "Asperion sandbox, authorised via OAuth" in text
    assert figure(text, "items entered in Exact Online") == "3" and figure(text, "created in Asperion") == "3"
    assert figure(text, "orders entered in Exact Online") == "3"
    assert figure(text, "orders entered in Asperion") == "3" and figure(text, "created in Exact Online") == "3"
    assert re.search(r"Asperion API calls per order\s+\d+\.\d\d", text), text
    assert "every order is accounted for" in text
    assert children() <= before, "the demo left child processes running"


@pytest.mark.integration
def test_the_squarespace_exact_pair_books_checkouts_repairs_a_lost_notification_and_fulfils_back(tmp_path):
    before = children()
    code, text = run_pair("squarespace-exactonline", tmp_path)
    assert code == 0, text
    assert "Squarespace → Exact Online" in text and "Exact Online sandbox, authorised via OAuth" in text
    assert text.count("created webhook") == 3 and "for order.create" in text  # koppel endpoints sync
    orders = accounted(text, "orders Squarespace → Exact Online", "orders placed at the checkout of Squarespace",
                       "created", 3)  # fmt: skip
    assert re.search(r"Exact Online API calls per order +\d+\.\d\d", orders), orders
    accounted(text, "missed notifications Squarespace → Exact Online",
              "orders placed, notification lost, in Squarespace", "created", 2)  # fmt: skip
    status = accounted(text, "order status Exact Online → Squarespace", "orders delivered in Exact Online",
                       "updated", 3)  # fmt: skip
    assert re.search(r"Squarespace API calls per order +\d+\.\d\d", status), status
    assert "not in" not in text and "differs" not in text and "not fulfilled" not in text  # the cross-checks
    assert "VAT code" not in text
    assert "every order is accounted for" in text
    assert children() <= before, "the demo left child processes running"


def test_the_demo_names_the_pairs_when_given_one_it_does_not_know(capsys):
    assert main(["demo", "--pair", "shopify-sap"]) == 2
    err = capsys.readouterr().err
    assert "--pair 'shopify-sap' is not a pair Koppel runs" in err
    assert (
        "woocommerce-exactonline, winstore-exactonline, winstore-businesscentral, exactonline-asperion, "
        "squarespace-exactonline"
    ) in err
