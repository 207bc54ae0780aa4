"""The browser console end to end, in Debian's Chromium.

A staff member books a trip (validation next to the fields, scope check before submitting),
the department's approver approves, the dispatcher passes dispatch review and assigns (a
conflict answers with its reason; "optimise" previews the planner's plan or says it is not
available), a simulated car drives the trip, the supervisor replays the route and sees the
mileage; a car driven at night without a booking shows up as a private-use suspicion. Every
page is saved under test-artifacts/e2e/ and no page logs a JavaScript or console error.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from tests.e2e.conftest import Browser, Server, shot, wait

pytestmark = pytest.mark.slow


def beijing(day_offset: int, hour: int, minute: int = 0) -> datetime:
    """A time ``day_offset`` days from today at ``hour`` Beijing time, as aware UTC."""
    local = datetime.now(UTC) + timedelta(hours=8)
    d = local.date() + timedelta(days=day_offset)
    return datetime(d.year, d.month, d.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def local_input(t: datetime) -> str:
    return (t + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M")


class Api:
    def __init__(self, server: Server) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=30)
        self.tokens: dict[str, str] = {}

    def as_(self, user: str) -> dict[str, str]:
        if user not in self.tokens:
            r = self.http.post("/api/auth/token", data={"username": user, "password": "demo"})
            r.raise_for_status()
            self.tokens[user] = r.json()["access_token"]
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def get(self, user: str, path: str, **kw: Any) -> Any:
        r = self.http.get(path, headers=self.as_(user), **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, user: str, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, headers=self.as_(user), json=json, **kw)


def place(city: Any, pid: str) -> dict[str, Any]:
    p = city.place(pid)
    return {"address": p.name, "lat": p.lat, "lon": p.lon}


def drive(server: Server, city: Any, vehicle_id: int, terminal_id: str, visits: list[Any],
          t0: datetime, seed: int) -> None:
    """A simulated car's fixes stored as the gateway and writer would store them."""
    from simulators.noise import NoiseConfig, observe
    from simulators.tracks import simulate_itinerary
    from telematics.models import Position

    track = simulate_itinerary(city, visits, t0, terminal_id, seed=seed, rate_hz=0.5)
    rows, seen = [], set()
    for fx in observe(track, NoiseConfig(duplicate=0.0, reorder=0.0, seed=seed)):
        if fx.time in seen:
            continue
        seen.add(fx.time)
        rows.append({"terminal_id": fx.terminal_id, "time": fx.time, "vehicle_id": vehicle_id,
                     "lat": fx.lat, "lon": fx.lon, "speed_kmh": fx.speed_kmh,
                     "course": fx.course, "altitude_m": fx.altitude_m, "hdop": fx.hdop,
                     "satellites": fx.satellites, "valid": fx.valid, "protocol": fx.protocol,
                     "alarm": fx.alarm, "status": fx.status, "extras": fx.extras,
                     "received_at": fx.time})
    for attempt in range(20):  # the demo's writer shares the SQLite file
        try:
            with server.engine.begin() as conn:
                conn.execute(insert(Position), rows)
            return
        except Exception as exc:  # database is locked: try again
            if "locked" not in str(exc) or attempt == 19:
                raise
            import time

            time.sleep(0.5)


def test_console_booking_to_supervision(console_server: Server, browser: Browser) -> None:
    from simulators.city import build_city

    city = build_city()
    api = Api(console_server)
    base = console_server.base_url
    day = (beijing(1, 0) + timedelta(hours=8)).strftime("%Y-%m-%d")
    start, end = beijing(1, 10), beijing(1, 12)
    vehicles = api.get("admin", "/api/vehicles", params={"limit": 500})["items"]
    pool = [v for v in vehicles if v["department_id"] == 2 and v["seats"] >= 5]
    car, other_car, night_car = pool[9], pool[10], pool[11]  # not among the 6 driving live
    drivers = api.get("admin", "/api/drivers", params={"limit": 500})["items"]

    # A second booking (water bureau, through the API) competes for the same car and hour.
    rival = api.post("staff2", "/api/dispatch/bookings", {
        "purpose": "emergency", "passengers": 3, "pickup": place(city, "admin-centre"),
        "destinations": [place(city, "district-east")], "start_at": start.isoformat(),
        "end_at": end.isoformat(), "submit": True,
        "notes": "<img src=x onerror=\"window.__xss=1\">"})
    assert rival.status_code == 201, rival.text
    rival_id = rival.json()["id"]
    assert api.post("approver2", f"/api/dispatch/bookings/{rival_id}/approve",
                    {"reason": "同意"}).status_code == 200
    # An urgent task (防汛) running now on a car that is driving live: "on a booking" on the map.
    live_car = vehicles[0]  # T0001, one of the demo's simulated cars
    now = datetime.now(UTC)
    urgent = api.post("staff2", "/api/dispatch/bookings", {
        "purpose": "emergency", "urgent_tag": "防汛", "passengers": 2,
        "pickup": place(city, "admin-centre"), "destinations": [place(city, "district-north")],
        "start_at": (now - timedelta(minutes=1)).isoformat(),
        "end_at": (now + timedelta(hours=2)).isoformat(), "submit": True})
    assert urgent.status_code == 201 and urgent.json()["status"] == "approved", urgent.text
    r = api.post("dispatcher", f"/api/dispatch/bookings/{urgent.json()['id']}/assign",
                 {"vehicle_id": live_car["id"], "driver_id": drivers[2]["id"]})
    assert r.status_code == 200, r.text
    # A hostile address must be shown as text, never run.
    xss = api.post("staff1", "/api/dispatch/bookings", {
        "purpose": "research", "passengers": 1,
        "pickup": {"address": "<img src=x onerror=\"window.__xss=1\">行政中心",
                   "lat": 30.66, "lon": 104.06},
        "destinations": [place(city, "hotel-jinjiang")],
        "start_at": beijing(2, 9).isoformat(), "end_at": beijing(2, 10).isoformat()})
    assert xss.status_code == 201, xss.text

    # --- 1. staff books: validation next to the field, scope check, submit -----------------
    page = browser.page("staff1")
    browser.login(page, "staff1")
    assert page.get_attribute("html", "lang") == "zh-CN"  # staff1's locale
    menus = page.eval_on_selector_all("#menu a", "els => els.map(e => e.dataset.menu)")
    assert menus == ["book"]
    page.fill("#f-passengers", "0")
    page.select_option("#f-pickup", "admin-centre")
    page.select_option("#f-destinations", "district-south")
    page.fill("#f-start_at", local_input(start))
    page.fill("#f-end_at", local_input(end))
    page.click("#submit-booking")
    err = page.wait_for_selector("[data-error-for=passengers] div")
    assert "应大于或等于 1" in (err.text_content() or "")  # pydantic's reason, in Chinese
    assert "invalid" in (page.get_attribute("#f-passengers", "class") or "")
    shot(page, "01-booking-validation")
    page.fill("#f-passengers", "2")
    page.select_option("#f-purpose", "research")
    page.click("#evaluate")
    outcome = page.wait_for_selector(".scope-outcome")
    assert outcome.get_attribute("data-outcome") in ("in_scope", "needs_approval")
    assert page.text_content("[data-error-for=passengers]") == ""
    page.click("#submit-booking")
    ok = page.wait_for_selector("#book-msg .msg.ok")
    booking_id = int(re.search(r"(\d+)", ok.text_content() or "").group(1))  # type: ignore[union-attr]
    page.wait_for_selector(f"#my-bookings tr[data-booking='{booking_id}'][data-status=submitted]")
    # the hostile address is on the page as text, and nothing ran
    page.wait_for_selector(f"#my-bookings tr[data-booking='{xss.json()['id']}']")
    assert "<img src=x" in (page.text_content("#my-bookings") or "")
    assert page.evaluate("window.__xss") is None
    assert page.query_selector("#my-bookings img") is None
    shot(page, "02-booking-submitted")

    # --- 2. the department's approver decides -----------------------------------------------
    page = browser.page("approver1")
    browser.login(page, "approver1")
    row = page.wait_for_selector(f"#approval-queue tr[data-booking='{booking_id}']")
    assert page.query_selector(f"#approval-queue tr[data-booking='{rival_id}']") is None  # water's
    shot(page, "03-approval-queue")
    row.query_selector("button.approve").click()
    page.wait_for_selector(f"#approval-queue tr[data-booking='{booking_id}']", state="detached")

    # --- 3. the dispatcher reviews and assigns; a conflict says why; optimise ----------------
    page = browser.page("dispatcher")
    browser.login(page, "dispatcher")
    page.goto(base + "/#/dispatch")
    page.fill("#dispatch-day", day)
    page.dispatch_event("#dispatch-day", "change")
    for bid in (booking_id, rival_id):
        page.click(f"#unassigned tr[data-booking='{bid}'] button.review")
        page.wait_for_selector(f"#unassigned tr[data-booking='{bid}'][data-status=approved]")
    page.click(f"#unassigned tr[data-booking='{rival_id}'] button.pick")
    page.select_option("#assign-vehicle", str(car["id"]))
    page.select_option("#assign-driver", str(drivers[0]["id"]))
    page.click("#assign")
    page.wait_for_selector("#dispatch-msg .msg.ok")
    page.click(f"#unassigned tr[data-booking='{booking_id}'] button.pick")
    page.select_option("#assign-vehicle", str(car["id"]))
    page.select_option("#assign-driver", str(drivers[1]["id"]))
    page.click("#assign")
    conflict = page.wait_for_selector("#dispatch-msg .msg.error")
    assert conflict.text_content()
    shot(page, "04-dispatch-conflict")
    page.select_option("#assign-vehicle", str(other_car["id"]))
    page.click("#assign")
    page.wait_for_selector("#dispatch-msg .msg.ok")
    page.wait_for_selector(f"#gantt g.bar[data-booking='{booking_id}']")
    page.wait_for_selector(f"#gantt g.bar[data-booking='{rival_id}']")
    page.click("#optimise")
    page.wait_for_selector("#plan-preview, #dispatch-msg .msg.info, #dispatch-msg .msg.error")
    if page.query_selector("#plan-preview") is None:  # scheduler/ has no API yet
        said = page.text_content("#dispatch-msg") or ""
        assert re.search("planner not available|排班引擎不可用", said), said
        shot(page, "05-dispatch-board")
    else:  # the planner exists: its preview (with reasons for unserved) and commit
        shot(page, "05-dispatch-board")
        page.click("#commit-plan")
        page.wait_for_selector("#dispatch-msg .msg")

    # --- 4. a simulated car drives the booking; another drives at night without one ---------
    car_id = other_car["id"]
    t0 = start - timedelta(minutes=25)
    drive(console_server, city, car_id, other_car["terminal_id"] or f"SIM{car_id}",
          [("garage-central", 600), ("admin-centre", 600), ("district-south", 1800),
           ("admin-centre", 600), ("garage-central", 900)], t0, seed=3)
    night = beijing(1, 23)
    drive(console_server, city, night_car["id"], night_car["terminal_id"] or "SIMN",
          [("garage-central", 600), ("hotel-tianfu", 2400), ("garage-central", 600)],
          night, seed=5)
    for vid, a, b in ((car_id, t0 - timedelta(hours=1), t0 + timedelta(hours=5)),
                      (night_car["id"], night - timedelta(hours=1), night + timedelta(hours=3))):
        r = api.post("dispatcher", f"/api/dispatch/vehicles/{vid}/match",
                     params={"from": a.isoformat(), "to": b.isoformat()})
        assert r.status_code == 200, r.text
        r = api.post("admin", f"/api/vehicles/{vid}/recompute",
                     params={"from": a.isoformat(), "to": b.isoformat()})
        assert r.status_code == 200, r.text
    with console_server.engine.begin() as conn:  # an overspeed event on the booked trip
        from telematics.models import Event

        conn.execute(insert(Event), [{
            "vehicle_id": car_id, "terminal_id": other_car["terminal_id"] or "SIM",
            "type": "overspeed", "time": start + timedelta(minutes=20), "key": "",
            "lat": city.place("district-south").lat + 0.01,
            "lon": city.place("district-south").lon, "value": 92.0, "threshold": 60.0,
            "detail": {}, "created_at": datetime.now(UTC)}])
    r = api.post("admin", "/api/ledger/costs", {
        "vehicle_id": car_id, "category": "fuel", "amount_fen": 36_500,
        "occurred_on": (start + timedelta(hours=8)).date().isoformat(), "note": "加油"})
    assert r.status_code == 201, r.text
    done = api.get("supervisor", f"/api/dispatch/bookings/{booking_id}")
    assert done["status"] == "completed", done
    assert done["distance_m"] > 1000

    # --- 5. the supervisor: live map, replay with mileage, suspicions, reports, audit --------
    page = browser.page("supervisor")
    browser.login(page, "supervisor")
    menus = page.eval_on_selector_all("#menu a", "els => els.map(e => e.dataset.menu)")
    assert menus == ["live", "supervise", "ledger"]
    page.wait_for_selector("#ws-state[data-state=on]")
    page.wait_for_selector("#car-list li")
    assert wait(lambda: len(page.query_selector_all("#car-list li")) >= 6, 30)
    page.select_option("#live-cat", "law_enforcement")  # filters: no such car is driving
    page.wait_for_selector("#car-list li", state="detached")
    page.select_option("#live-cat", "")
    page.select_option("#live-dep", str(live_car["department_id"]))
    page.wait_for_selector("#car-list li")
    page.select_option("#live-dep", "")
    on_booking = f"#car-list li[data-vehicle='{live_car['id']}'][data-status=on_booking]"
    page.wait_for_selector(on_booking, timeout=30_000)
    page.click(on_booking)
    popup = page.wait_for_selector(".leaflet-popup .popup")
    text = popup.text_content() or ""
    assert "km/h" in text and drivers[2]["name"] in text and f"#{urgent.json()['id']}" in text
    first_fix = page.text_content(".leaflet-popup .popup-time")
    # the WebSocket moves the car on: the popup's last fix time changes without a reload
    assert wait(lambda: page.text_content(".leaflet-popup .popup-time") != first_fix, 20)
    # the map has roads drawn (offline background) and the cars on it
    assert page.evaluate("document.querySelectorAll('#map canvas').length") >= 1
    shot(page, "06-live-map")

    page.goto(base + "/#/supervise")
    page.select_option("#replay-vehicle", str(car_id))
    page.fill("#replay-from", local_input(t0 - timedelta(minutes=30)))
    page.fill("#replay-to", local_input(t0 + timedelta(hours=4)))
    page.click("#replay-load")
    mileage = page.wait_for_selector("#replay-mileage")
    km = float(re.search(r"([\d.]+)\s*km", mileage.text_content() or "").group(1))  # type: ignore[union-attr]
    assert km == pytest.approx(done["distance_m"] / 1000, rel=0.25)
    page.wait_for_selector(f"#replay-bookings tr[data-booking='{booking_id}']")
    assert "overspeed" in (page.text_content("#replay-info") or "")
    page.eval_on_selector("#replay-slider", "el => { el.value = String(Math.floor(el.max / 2));"
                          " el.dispatchEvent(new Event('input')); }")
    assert re.search(r"\d{2}:\d{2}:\d{2}", page.text_content("#replay-cursor") or "")
    shot(page, "07-replay")

    page.click("[data-tab=suspicions]")
    susp = page.wait_for_selector("#pane-suspicions tr[data-suspicion]")
    assert night_car["plate"] in (page.text_content("#pane-suspicions") or "")
    assert susp.query_selector(".evidence li") is not None
    shot(page, "08-suspicions")
    page.click("#pane-suspicions tr[data-suspicion] button.show-route")
    page.wait_for_selector("#replay-mileage")

    page.click("[data-tab=reports]")
    page.fill("#report-from", (beijing(0, 0) + timedelta(hours=8)).strftime("%Y-%m-%d"))
    page.fill("#report-to", (beijing(3, 0) + timedelta(hours=8)).strftime("%Y-%m-%d"))
    page.click("#report-load")
    page.wait_for_selector("#mileage-chart svg rect")
    page.wait_for_selector("#cost-chart svg rect")
    assert other_car["plate"] in (page.text_content("#mileage-chart") or "")
    page.wait_for_selector("#stats-line")
    with page.expect_download() as dl:
        page.click("[data-download=stats]")
    assert dl.value.suggested_filename == "stats.xlsx"
    shot(page, "09-reports")

    page.click("[data-tab=audit]")
    page.wait_for_selector("#audit-table tbody tr")
    assert "assign" in (page.text_content("#audit-table") or "")
    shot(page, "10-audit")

    # --- 6. ledger and assets, and a purchase request outside the caps ----------------------
    page = browser.page("admin")
    browser.login(page, "admin")
    page.goto(base + "/#/ledger")
    page.wait_for_selector("#ledger-vehicles tr[data-vehicle]")
    page.select_option("#f-category", "general")
    page.fill("#f-brand_model", "豪华轿车 <b>X</b>")
    page.fill("#f-price_fen", "99")
    page.fill("#f-displacement_l", "3.0")
    page.select_option("#f-energy_type", "petrol")
    page.click("#purchase-form button[type=submit]")
    page.wait_for_selector("#purchase-msg .msg")
    page.wait_for_selector("#ledger-purchases tr[data-purchase]")
    assert "<b>X</b>" in (page.text_content("#ledger-purchases") or "")
    shot(page, "11-ledger")

    # --- 7. English, by switch and by a user's locale ---------------------------------------
    page.click("#lang")
    page.wait_for_selector("#menu a[data-menu=ledger]:text('Ledger & assets')")
    assert page.get_attribute("html", "lang") == "en"
    page.wait_for_selector("#ledger-purchases tr[data-purchase]")
    shot(page, "12-ledger-en")
    r = api.post("admin", "/api/users", {"username": "visitor", "password": "demo-visitor-1",
                                         "role": "staff", "department_id": 3, "locale": "en",
                                         "full_name": "Visitor <script>x</script>"})
    assert r.status_code == 201, r.text
    page = browser.page("visitor")
    page.goto(base + "/")
    page.evaluate("localStorage.clear()")
    page.fill("#username", "visitor")
    page.fill("#password", "demo-visitor-1")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#menu a[data-menu=book]:text('Booking')")
    assert "<script>x</script>" in (page.text_content("#who") or "")
    shot(page, "13-booking-en")

    assert browser.errors == [], "\n".join(browser.errors)
