"""The Evolution client against the project's Evolution simulator over loopback HTTP: every call and
every error class, as the operator will meet them."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from whatsapp_operator.core.breaker import BreakerState, CircuitBreaker
from whatsapp_operator.devkit.simulator import Simulator
from whatsapp_operator.evolution import (
    BadRequest,
    CircuitOpen,
    ConnectionState,
    EvolutionClient,
    EvolutionTimeout,
    EvolutionUnavailable,
    InstanceNotFound,
    LiveState,
    NameInUse,
    NotConnected,
    NumberCheck,
    NumberNotOnWhatsApp,
    OperationFailed,
    QRCode,
    SocketTimeout,
    Unauthorized,
    UnexpectedResponse,
    WebhookSettings,
)

pytestmark = pytest.mark.looptime

API_KEY = "contract-global-key-9d1e"
DRIVER = "5511987654321"
PAIRING_ALPHABET = set("123456789ABCDEFGHJKLMNPQRSTVWXYZ")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(api_key=API_KEY, seed=1)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def breaker() -> CircuitBreaker:
    return CircuitBreaker(clock=asyncio.get_running_loop().time)


@pytest.fixture
async def client(sim: Simulator, breaker: CircuitBreaker) -> AsyncIterator[EvolutionClient]:
    assert sim.base_url is not None
    async with EvolutionClient(sim.base_url, API_KEY, breaker=breaker) as evolution:
        yield evolution


async def paired(client: EvolutionClient, sim: Simulator, name: str) -> None:
    """Create an instance and pair it the way a driver does: pairing code, then the phone confirms."""
    await client.create_instance(name, token=f"token-{name}")
    await client.connect(name, number=DRIVER)
    await asyncio.sleep(1)  # the first code arrives a second after the socket starts
    sim.act(name, "pair")
    await asyncio.sleep(5)  # WhatsApp's 515 restart, then the new socket opens
    assert (await client.connection_state(name)).state is ConnectionState.OPEN


# -- every call -----------------------------------------------------------------------------------


async def test_create_then_the_name_is_in_use(client: EvolutionClient, sim: Simulator) -> None:
    webhook = WebhookSettings(url="http://127.0.0.1:9/hook", events=("CONNECTION_UPDATE",), headers={"x-k": "v"})
    created = await client.create_instance("drv-1", token="token-drv-1", webhook=webhook, number=DRIVER)
    assert (created.name, created.status, created.token, created.qrcode) == (
        "drv-1",
        ConnectionState.CLOSE,
        "token-drv-1",
        None,
    )
    assert created.instance_id == sim.instances["drv-1"].id
    assert await client.find_webhook("drv-1") == webhook

    with pytest.raises(NameInUse) as info:
        await client.create_instance("drv-1", token="other")
    assert info.value.status_code == 403


async def test_create_with_qrcode_waits_for_the_first_pairing_code(client: EvolutionClient, looptime: float) -> None:
    created = await client.create_instance("drv-1", token="t", number=DRIVER, qrcode=True)
    assert looptime == pytest.approx(5, abs=0.1)  # Evolution's 5 s wait fits in the client's read timeout
    assert created.status is ConnectionState.CONNECTING
    assert created.qrcode is not None
    assert created.qrcode.count == 1
    assert created.qrcode.pairing_code is not None
    assert len(created.qrcode.pairing_code) == 8
    assert set(created.qrcode.pairing_code) <= PAIRING_ALPHABET


async def test_connect_with_a_number_gives_a_pairing_code_until_paired(client: EvolutionClient, sim: Simulator) -> None:
    await client.create_instance("drv-1", token="t")
    first = await client.connect("drv-1", number=DRIVER)
    assert sim.requests[-1].query == {"number": DRIVER}
    assert isinstance(first, QRCode)
    assert first.pairing_code is not None
    assert len(first.pairing_code) == 8
    assert first.code  # the raw QR payload is there too, but it is not the pairing code
    assert first.code != first.pairing_code
    assert await client.connect("drv-1") == first  # connecting: the current code, nothing restarted
    assert (await client.connection_state("drv-1")).state is ConnectionState.CONNECTING

    sim.act("drv-1", "pair")
    await asyncio.sleep(5)
    assert await client.connect("drv-1") == LiveState("drv-1", ConnectionState.OPEN)


async def test_connect_in_qr_mode_has_no_pairing_code(client: EvolutionClient) -> None:
    await client.create_instance("drv-1", token="t")
    answer = await client.connect("drv-1")
    assert isinstance(answer, QRCode)
    assert answer.pairing_code is None
    assert answer.code is not None
    assert answer.base64 is not None
    assert answer.base64.startswith("data:image/png;base64,")


async def test_connection_state_of_each_state(client: EvolutionClient, sim: Simulator) -> None:
    await client.create_instance("drv-1", token="t")
    assert await client.connection_state("drv-1") == LiveState("drv-1", ConnectionState.CLOSE)
    await paired(client, sim, "drv-2")
    sim.act("drv-2", "drop", reason=428)  # transient: Evolution reconnects by itself
    assert (await client.connection_state("drv-2")).state is ConnectionState.CONNECTING
    await asyncio.sleep(5)
    assert (await client.connection_state("drv-2")).state is ConnectionState.OPEN


async def test_logout_then_not_connected(client: EvolutionClient, sim: Simulator) -> None:
    await paired(client, sim, "drv-1")
    await client.logout("drv-1")
    await asyncio.sleep(1)
    assert (await client.connection_state("drv-1")).state is ConnectionState.CLOSE
    with pytest.raises(NotConnected) as info:
        await client.logout("drv-1")
    assert info.value.status_code == 400
    assert "drv-1" in sim.instances  # logout keeps the instance


async def test_logout_of_a_stuck_connecting_instance(client: EvolutionClient, sim: Simulator) -> None:
    sim.add_instance("drv-1", "connecting")
    await client.logout("drv-1")
    await asyncio.sleep(1)
    assert (await client.connection_state("drv-1")).state is ConnectionState.CLOSE


async def test_delete_removes_the_instance(client: EvolutionClient, sim: Simulator) -> None:
    await paired(client, sim, "drv-1")
    await client.delete("drv-1")
    await asyncio.sleep(1)
    with pytest.raises(InstanceNotFound):
        await client.connection_state("drv-1")
    await client.create_instance("drv-1", token="t")  # the name is free again


async def test_restart_reconnects_an_open_instance_and_fails_on_a_closed_one(
    client: EvolutionClient, sim: Simulator
) -> None:
    await paired(client, sim, "drv-1")
    assert await client.restart("drv-1") == LiveState("drv-1", ConnectionState.OPEN)
    await asyncio.sleep(5)
    assert (await client.connection_state("drv-1")).state is ConnectionState.OPEN

    await client.create_instance("drv-2", token="t")
    with pytest.raises(OperationFailed) as info:
        await client.restart("drv-2")
    assert str(info.value) == "restart 'drv-2': Evolution reported an error: [object Object] (HTTP 200)"


async def test_fetch_instances_shows_the_last_terminal_disconnection(client: EvolutionClient, sim: Simulator) -> None:
    await paired(client, sim, "drv-1")
    await client.create_instance("drv-2", token="t")
    sim.act("drv-1", "disconnect", reason=401)

    rows = await client.fetch_instances()
    assert sorted(row.name for row in rows) == ["drv-1", "drv-2"]
    [row] = await client.fetch_instances("drv-1")
    assert row.connection_status is ConnectionState.CLOSE
    assert row.disconnection_reason_code == 401
    assert row.disconnection_at is not None
    assert row.owner_jid == f"{DRIVER}@s.whatsapp.net"
    assert row.integration == "WHATSAPP-BAILEYS"

    with pytest.raises(InstanceNotFound):
        await client.fetch_instances("nobody")


async def test_send_text_from_a_connected_sender(client: EvolutionClient, sim: Simulator, looptime: float) -> None:
    await paired(client, sim, "sender")
    before = float(looptime)
    sent = await client.send_text("sender", DRIVER, "Seu WhatsApp desconectou", delay=1.5, link_preview=False)
    assert float(looptime) - before == pytest.approx(1.5, abs=0.1)  # "typing..." first
    assert sent.remote_jid == f"{DRIVER}@s.whatsapp.net"
    assert sent.status == "PENDING"
    [message] = sim.messages
    assert (message.instance, message.number, message.text, message.id) == (
        "sender",
        DRIVER,
        "Seu WhatsApp desconectou",
        sent.id,
    )


async def test_set_and_find_webhook(client: EvolutionClient) -> None:
    await client.create_instance("drv-1", token="t")
    assert await client.find_webhook("drv-1") is None
    settings = WebhookSettings(
        url="http://operator.test/webhooks/evolution",
        events=("CONNECTION_UPDATE", "QRCODE_UPDATED", "LOGOUT_INSTANCE"),
        headers={"jwt_key": "shared-secret"},
        by_events=True,
    )
    assert await client.set_webhook("drv-1", settings) == settings
    assert await client.find_webhook("drv-1") == settings


async def owner_jid(client: EvolutionClient, name: str) -> str:
    (row,) = await client.fetch_instances(name)
    assert row.owner_jid is not None
    return row.owner_jid


async def test_on_whatsapp_answers_over_a_live_socket(client: EvolutionClient, sim: Simulator) -> None:
    await paired(client, sim, "drv-1")
    jid = await owner_jid(client, "drv-1")
    assert jid == f"{DRIVER}@s.whatsapp.net"
    assert await client.on_whatsapp("drv-1", jid, answer_within=10) == [NumberCheck(jid, True)]
    (request,) = [r for r in sim.requests if r.path == "/baileys/onWhatsapp/drv-1"]
    assert (request.method, request.body, request.status) == ("POST", {"jid": jid}, 200)


async def test_a_zombie_says_open_but_its_socket_is_closed_until_a_restart_heals_it(
    client: EvolutionClient, sim: Simulator, breaker: CircuitBreaker
) -> None:
    await paired(client, sim, "drv-1")
    jid = await owner_jid(client, "drv-1")
    sim.act("drv-1", "zombie")
    assert (await client.connection_state("drv-1")).state is ConnectionState.OPEN, "Evolution's memory says open"
    for _ in range(breaker.failure_threshold):
        with pytest.raises(NotConnected) as info:
            await client.on_whatsapp("drv-1", jid, answer_within=10)
        assert info.value.status_code == 500
    with pytest.raises(NotConnected):
        await client.send_text("drv-1", DRIVER, "Olá")
    assert breaker.state is BreakerState.CLOSED, "one dead socket is not a failing server"

    await client.restart("drv-1")
    await asyncio.sleep(5)  # the reconnect Evolution makes after the restart's close
    assert await client.on_whatsapp("drv-1", jid, answer_within=10) == [NumberCheck(jid, True)]


async def test_a_zombie_a_restart_does_not_heal_stays_dead_until_its_session_ends(
    client: EvolutionClient, sim: Simulator
) -> None:
    await paired(client, sim, "drv-1")
    jid = await owner_jid(client, "drv-1")
    sim.act("drv-1", "zombie", heals=False)
    await client.restart("drv-1")
    await asyncio.sleep(5)
    assert (await client.connection_state("drv-1")).state is ConnectionState.OPEN
    with pytest.raises(NotConnected):
        await client.on_whatsapp("drv-1", jid, answer_within=10)
    await client.logout("drv-1")
    await asyncio.sleep(1)
    assert sim.instances["drv-1"].zombie is False, "the session ended with the logout"


async def test_a_fleet_wide_liveness_fault_fails_every_socket_and_nothing_else(
    client: EvolutionClient, sim: Simulator
) -> None:
    await paired(client, sim, "drv-1")
    jid = await owner_jid(client, "drv-1")
    sim.add_fault("liveness", duration=60)
    with pytest.raises(NotConnected):
        await client.on_whatsapp("drv-1", jid, answer_within=10)
    assert (await client.connection_state("drv-1")).state is ConnectionState.OPEN
    sim.clear_faults()
    sim.add_fault("liveness", mode="hang")
    loop = asyncio.get_running_loop()
    sent, started = len(sim.requests), loop.time()
    with pytest.raises(SocketTimeout):
        await client.on_whatsapp("drv-1", jid, answer_within=10)
    assert len(sim.requests) - sent == 1, "a silent socket is not retried"
    assert 10 <= loop.time() - started < 10.5, "its own timeout, not the client's 5 s"


async def test_on_whatsapp_keeps_evolutions_guards(client: EvolutionClient, sim: Simulator) -> None:
    with pytest.raises(InstanceNotFound):
        await client.on_whatsapp("nobody", f"{DRIVER}@s.whatsapp.net", answer_within=10)
    sim.add_instance("drv-1", "open")
    async with EvolutionClient(str(sim.base_url), "wrong-key", attempts=1) as stranger:
        with pytest.raises(Unauthorized):
            await stranger.on_whatsapp("drv-1", f"{DRIVER}@s.whatsapp.net", answer_within=10)


# -- every error class ----------------------------------------------------------------------------


async def test_a_wrong_key_is_unauthorized_but_an_unknown_name_is_still_not_found(sim: Simulator) -> None:
    assert sim.base_url is not None
    sim.add_instance("drv-1")
    async with EvolutionClient(sim.base_url, "wrong-key") as stranger:
        with pytest.raises(Unauthorized) as info:
            await stranger.connection_state("drv-1")
        assert info.value.status_code == 401
        with pytest.raises(Unauthorized):
            await stranger.create_instance("drv-2", token="t")
        with pytest.raises(InstanceNotFound):  # Evolution checks existence before the key
            await stranger.connection_state("nobody")


async def test_an_instance_that_vanished_is_not_found(client: EvolutionClient, sim: Simulator) -> None:
    await paired(client, sim, "drv-1")
    sim.act("drv-1", "vanish")
    for call in (client.connection_state, client.connect, client.logout, client.restart, client.find_webhook):
        with pytest.raises(InstanceNotFound) as info:
            await call("drv-1")
        assert info.value.status_code == 404


async def test_validation_errors_are_bad_requests(client: EvolutionClient, sim: Simulator) -> None:
    await paired(client, sim, "sender")
    with pytest.raises(BadRequest) as info:
        await client.send_text("sender", DRIVER, "   ")
    assert info.value.messages == ("Text is required",)
    with pytest.raises(NumberNotOnWhatsApp):
        await client.send_text("sender", "12345678", "Olá")
    assert sim.messages == []


async def test_send_text_from_a_disconnected_sender_is_not_connected(
    client: EvolutionClient, sim: Simulator, breaker: CircuitBreaker
) -> None:
    await client.create_instance("sender", token="t")
    for _ in range(breaker.failure_threshold):
        with pytest.raises(NotConnected):
            await client.send_text("sender", DRIVER, "Olá")
    assert breaker.state is BreakerState.CLOSED  # the server is fine; the sender is not


async def test_a_wrong_base_path_is_an_unexpected_answer_not_a_missing_instance(sim: Simulator) -> None:
    sim.add_instance("drv-1")
    async with EvolutionClient(f"{sim.base_url}/evolution", API_KEY) as misconfigured:
        with pytest.raises(UnexpectedResponse) as info:
            await misconfigured.connection_state("drv-1")
    assert str(info.value) == (
        "connection_state 'drv-1': unexpected answer: Cannot GET /evolution/instance/connectionState/drv-1 (HTTP 404)"
    )


async def test_an_outage_answering_503_is_retried_then_unavailable(client: EvolutionClient, sim: Simulator) -> None:
    sim.add_instance("drv-1", "open")
    sim.add_fault("outage", mode="503")
    sent = len(sim.requests)
    with pytest.raises(EvolutionUnavailable) as info:
        await client.connection_state("drv-1")
    assert info.value.status_code == 503
    assert len(sim.requests) - sent == 3

    sim.clear_faults()
    assert (await client.connection_state("drv-1")).state is ConnectionState.OPEN


async def test_a_refusing_server_is_unavailable(client: EvolutionClient, sim: Simulator) -> None:
    sim.add_instance("drv-1", "open")
    sim.add_fault("outage", duration=30, mode="refuse")
    await asyncio.sleep(0)  # the listener closes on the next loop iteration
    with pytest.raises(EvolutionUnavailable) as info:
        await client.connection_state("drv-1")
    assert type(info.value) is EvolutionUnavailable
    assert info.value.status_code is None

    await asyncio.sleep(30)
    assert (await client.connection_state("drv-1")).state is ConnectionState.OPEN


async def test_a_hanging_server_times_out(client: EvolutionClient, sim: Simulator, looptime: float) -> None:
    sim.add_instance("drv-1", "open")
    sim.add_fault("timeouts", rate=1.0)
    with pytest.raises(EvolutionTimeout):
        await client.connection_state("drv-1")
    assert 15.3 <= looptime <= 15.6  # three 5 s attempts and backoffs of 0.1-0.2 s and 0.2-0.3 s
    assert [request.status for request in sim.requests] == [None, None, None]


async def test_server_errors_are_retried_and_a_later_success_is_invisible(
    client: EvolutionClient, sim: Simulator
) -> None:
    sim.add_instance("drv-1", "open")
    sim.add_fault("errors", duration=0.05, rate=1.0, status=500)  # over before the first retry
    assert (await client.connection_state("drv-1")).state is ConnectionState.OPEN
    assert [request.status for request in sim.requests] == [500, 200]


async def test_the_breaker_opens_on_an_outage_and_closes_after_it(
    client: EvolutionClient, sim: Simulator, breaker: CircuitBreaker
) -> None:
    sim.add_instance("drv-1", "open")
    sim.add_fault("outage", duration=50, mode="503")
    for _ in range(5):
        with pytest.raises(EvolutionUnavailable):
            await client.connection_state("drv-1")
    assert breaker.state is BreakerState.OPEN
    sent = len(sim.requests)
    with pytest.raises(CircuitOpen):
        await client.connection_state("drv-1")
    assert len(sim.requests) == sent  # failed fast, nothing sent

    await asyncio.sleep(61)  # past the open window: looptime's float clock may land a hair short of 60
    assert (await client.connection_state("drv-1")).state is ConnectionState.OPEN
    assert breaker.state is BreakerState.CLOSED
