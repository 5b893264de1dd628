"""``lienthong demo``: the whole foundation, end to end, on one machine.

Creates the development PKI if missing, starts the national sandbox on a free port, does signed
exchanges with each of the three national services through the real connectors, prints what was
sent, verified and recorded, verifies the audit chain, and stops the sandbox. Exit status 0 only
if every exchange verified and the chain is intact.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ...connectors.csdl_tthc import CsdlTthcClient
from ...connectors.dvc_portal import DvcPortalClient
from ...connectors.port import PartnerAnswer, PartnerCall, PartnerTransport
from ...connectors.reporting import ReportingClient
from ...connectors.services import SERVICES
from ...connectors.transport import transport_for
from ...sandbox.server import SandboxConfig, SandboxServer
from ...signing.cli import cmd_keys_init, signer_for, trust_store_for
from ..audit import ledger
from ..audit.seal import create_seal, verify_ledger
from ..errors import ConfigurationError, HubError
from ..settings import Settings
from ..store import open_store
from .catalogue import list_procedures, sync_catalogue


class _Recorder:
    """A transport that hands every call to the real one and keeps each answer for the summary table."""

    def __init__(self, transport: PartnerTransport, rows: list[tuple[str, PartnerAnswer]]):
        self._transport = transport
        self._rows = rows
        self.spec, self.address, self.audit = transport.spec, transport.address, transport.audit

    def handle(self, call: PartnerCall) -> PartnerAnswer:
        answer = self._transport.handle(call)
        self._rows.append((self.spec.name, answer))
        return answer


def _portal_time(moment: datetime) -> str:
    from ..envelope import VN_TZ

    return moment.astimezone(VN_TZ).strftime("%Y%m%d%H%M%S")


def _demo_dossier(settings: Settings, procedure: dict, now: datetime) -> dict:
    code = f"{settings.agency_code}-{now.astimezone().strftime('%Y%m%d')}-{now.strftime('%H%M%S')}01"
    field = (procedure.get("LINHVUCTHUCHIEN") or [{}])[0]
    return {
        "MaHoSo": code,
        "MaTTHC": procedure["MATTHC"],
        "TenTTHC": procedure["TENTTHC"],
        "MaLinhVuc": field.get("MALINHVUC"),
        "TenLinhVuc": field.get("TENLINHVUC"),
        "KenhThucHien": 2,
        "ChuHoSo": "Nguyễn Thị Hồng Nhung",
        "LoaiDoiTuong": 1,
        "TrichYeuHoSo": f"Đề nghị giải quyết thủ tục: {procedure['TENTTHC']}"[:1000],
        "NgayNopHoSo": _portal_time(now),
        "NgayTiepNhan": _portal_time(now),
        "TrangThaiHoSo": 2,
        "DonViXuLy": settings.agency_name,
    }


#: the services the portal's JSON adapter serves, when the demo runs ``--transport json``
JSON_SERVICES = ("csdl_tthc", "dvc_portal")


def run_demo(console: Console, *, procedures: int = 300, transport: str = "soap") -> int:
    started = time.perf_counter()
    settings = Settings.from_env()
    settings.ensure_home()
    console.rule("[bold]Liên thông Hub: demo" + (" over the portal's JSON adapter" if transport == "json" else ""))
    console.print(f"state under [cyan]{settings.home}[/]")

    pki = cmd_keys_init(settings)
    console.print(f"[green]✓[/] development PKI ready ({pki.ca_cert.parent}): hub {settings.agency_code}, "
                  f"national {settings.partner('dvc_portal').agency_code}")
    store = open_store(settings)
    audit = ledger(store)
    console.print(f"[green]✓[/] store at the latest schema ({store.engine.url.render_as_string(hide_password=True)})")

    sandbox = SandboxServer(SandboxConfig(port=0, procedures=procedures, pki_dir=settings.pki_dir,
                                          store_path=settings.home / "sandbox" / "sandbox.db",
                                          key_password=settings.key_password))
    base_url = sandbox.start()
    console.print(f"[green]✓[/] national sandbox listening at {base_url} ({procedures} procedures)")
    rows: list[tuple[str, PartnerAnswer]] = []
    failures: list[str] = []
    try:
        for spec in SERVICES.values():
            settings = settings.with_partner(replace(settings.partner(spec.name), url=base_url + spec.path))
        soap_settings = settings
        if transport == "json":  # the catalogue and the portal through the sandbox's adapter
            for name in JSON_SERVICES:
                settings = settings.with_partner(replace(
                    settings.partner(name), transport="json", url=base_url + "/adapter",
                    username=sandbox.config.json_username, password=sandbox.config.json_password,
                    dstcode=sandbox.config.json_dstcode))

        transports: dict[tuple[str, bool], PartnerTransport] = {}

        def connector(name: str, *, soap: bool = False) -> PartnerTransport:
            """One transport per service (and wire) for the whole demo, as a worker keeps one."""
            if (name, soap) not in transports:
                transports[name, soap] = _Recorder(transport_for(soap_settings if soap else settings, name,
                                                                 audit=audit), rows)
            return transports[name, soap]

        now = datetime.now(UTC)
        context: dict = {}
        steps = [
            ("CSDL TTHC: sync the procedure catalogue into the store", lambda: _csdl(connector, store)),
            ("Cổng DVC: look up, sync a dossier, send a processing step",
             lambda: _dvc(connector, settings, now, context)),
            ("One-stop system → outbox → Cổng DVC: intake, push of dossier statuses, upload of result files",
             lambda: _push(connector, settings, store)),
            ("Báo cáo: send a monthly report, ask its status", lambda: _baocao(connector, settings, now, context)),
        ]
        for title, step in steps:
            try:
                result = step()
                context.update(result or {})
                console.print(f"[green]✓[/] {escape(title)}")
                for line in (result or {}).get("_lines", []):
                    console.print(f"    {escape(line)}")
            except HubError as exc:
                failures.append(f"{title}: [{exc.code}] {exc}")
                console.print(f"[red]✗[/] {escape(title)}: {escape('[' + exc.code + ']')} {escape(str(exc))}")
    finally:
        received = sandbox.store.count() if hasattr(sandbox, "store") else None
        sandbox.stop()

    signers = sorted({r.signer_agency for _, r in rows if r.signer_agency})
    table = Table(title=f"Exchanges: every signed reply verified, signed by {', '.join(signers)}"
                  + ("; JSON adapter calls are authenticated by their session" if transport == "json" else ""))
    for col in ("service", "operation", "calls", "ms p50", "audited"):
        table.add_column(col, no_wrap=True)
    groups: dict[tuple[str, str], list[PartnerAnswer]] = {}
    for name, reply in rows:
        groups.setdefault((name, reply.operation), []).append(reply)
    for (name, operation), replies in groups.items():
        latencies = sorted(r.latency_ms for r in replies)
        audited = sum(len(r.audit_seqs) for r in replies)
        table.add_row(name, operation, str(len(replies)), f"{latencies[len(latencies) // 2]:.0f}", str(audited))
    console.print(table)
    if received is not None:
        console.print(f"the sandbox recorded {received} requests in its own store")

    # What the hourly lienthong_audit_seal DAG does: sign a checkpoint of the ledger's head, then
    # verify chain and seals together, as `lienthong audit verify` does.
    try:
        seal = create_seal(store.engine, signer_for(settings))
        report = verify_ledger(store.engine, trust_store_for(settings), settings.agency_code)
    except HubError as exc:
        failures.append(f"audit seal: {exc}")
        console.print(f"[red]✗[/] audit seal: {escape(str(exc))}")
    else:
        if report.ok:
            console.print(f"[green]✓[/] audit chain intact: {report.chain.checked} entries verified, "
                          f"{report.seals} seal(s), the newest (seal {seal.number}) at entry {seal.head_seq} "
                          f"([cyan]lienthong audit verify[/]; read it: [cyan]lienthong audit search[/], "
                          f"[cyan]lienthong audit dossier CODE[/])")
        else:
            failures.append(f"audit ledger: {report.where}: {report.problem}")
            console.print(f"[red]✗[/] audit ledger broken at {report.where}: {escape(report.problem or '')}")
    console.print(f"done in {time.perf_counter() - started:.1f} s")
    if transport == "soap":
        console.print("the catalogue sync and the push over the portal's JSON adapter instead: "
                      "[cyan]lienthong demo --transport json[/]")
    if failures:
        console.print(f"[red]{len(failures)} step(s) failed[/]")
        return 1
    return 0


def _csdl(connector, store) -> dict:
    client = CsdlTthcClient(connector("csdl_tthc"))
    summary = sync_catalogue(store.engine, client, full=True)
    first = list_procedures(store.engine, limit=1)[0]
    record = client.procedure(first.code)
    channels = ", ".join(
        f"kênh {c.get('KENH')}: " + "; ".join(f"{t.get('THOIGIANGIAIQUYET')} {t.get('DONVITINH')}"
                                              for t in c.get("THOIGIAN", []))
        for c in record.get("CACHTHUCTHUCHIEN", [])
    )
    return {
        "procedure": record,
        "_lines": [
            f"{summary.listed} procedures listed: {summary.new} new, {summary.changed} changed, "
            f"{summary.unchanged} unchanged, {summary.quarantined} quarantined; {summary.agencies} agencies, "
            f"{summary.fields} fields in {summary.seconds:.1f} s (browse them: lienthong tthc list)",
            f"{record['MATTHC']} {record['TENTTHC']}",
            f"processing time per channel: {channels}",
        ],
    }


def _dvc(connector, settings: Settings, now: datetime, context: dict) -> dict:
    client = DvcPortalClient(connector("dvc_portal"))
    # The demo needs a real procedure for its dossier: take one from the catalogue.
    procedure = context.get("procedure")
    if procedure is None:
        raise ConfigurationError("the portal step needs a procedure from the catalogue step, which failed")
    dossier = _demo_dossier(settings, procedure, now)
    before = client.lookup(dossier["MaHoSo"])
    results = client.sync_dossiers([dossier], is_updating=before["TonTai"])
    step = {
        "MaHoSo": dossier["MaHoSo"], "NguoiXuLy": "Trần Văn Minh", "ChucDanh": "Chuyên viên",
        "ThoiDiemXuLy": _portal_time(now), "PhongBanXuLy": "Bộ phận một cửa",
        "NoiDungXuLy": "Tiếp nhận hồ sơ, chuyển phòng chuyên môn thẩm định", "TrangThai": 4,
    }
    progress = client.update_progress([step])
    after = client.lookup(dossier["MaHoSo"])
    return {"_lines": [
        f"dossier {dossier['MaHoSo']} ({procedure['MATTHC']}): portal had it before: {before['TonTai']}; "
        f"sync answer {results[0].ma_loi} {results[0].mo_ta}".rstrip(),
        f"processing step accepted: {progress[0].accepted}; portal now reports status {after['TrangThaiHoSo']}",
    ]}


def _push(connector, settings: Settings, store) -> dict:
    """The main job: dossiers change in the one-stop system, the hub takes them in and delivers them."""
    from ...connectors.sources.base import SourceCursorUnclaimed
    from ...connectors.sources.sql import SqlSource
    from ...sandbox.onestop import OneStopSimulator
    from ...sandbox.onestop_results import attach_results
    from ..delivery.outbox import stats
    from .intake import CursorDecision, intake_once, load_source_mapping
    from .results_push import backlog, open_uploader
    from .results_push import drain as upload_results
    from .status_push import drain

    url = f"sqlite:///{settings.home / 'sandbox' / 'onestop.db'}"
    results_root = settings.results_root or settings.home / "sandbox" / "ket-qua"
    # a dozen new dossiers a day: over the simulated fortnight of a first run, some finish (results)
    simulator = OneStopSimulator(url, seed=1, arrivals_per_day=12)
    if simulator.total_dossiers == 0:
        simulator.populate(150)
    else:
        simulator.advance(200)  # a second demo run: the dossiers move on
    # the one-stop system keeps the results of dossiers it finished as files (a dozen per run here)
    attached = attach_results(simulator.db, results_root, catalogue=simulator.catalogue, large_share=0.0, limit=12)
    # The demo's one-stop system has only ever fed the portal through this hub (the sandbox portal
    # starts empty), so its dossiers need no TraCuuHoSo before their first snapshot.
    went_live = datetime.fromtimestamp(simulator.start, UTC)
    simulator.close()
    with SqlSource(url, load_source_mapping("onestop_sandbox", store.engine)) as source:
        try:
            taken = intake_once(store.engine, source)
        except SourceCursorUnclaimed:
            # a demo home from before sources had identities: its one cursor is this database's
            taken = intake_once(store.engine, source, audit=ledger(store), decision=CursorDecision(
                "adopt", "demo: the sandbox one-stop database is the only source this demo home ever read",
                actor="lienthong demo"))
    portal = DvcPortalClient(connector("dvc_portal"))
    since = settings.portal_sole_feed_since or went_live
    pushed = drain(store, portal, worker_id="demo", batch_size=50, sole_feed_since=since)
    # the results push: the upload is SOAP whatever carries the rest (the JSON adapter offers none),
    # then the status push again for the snapshots that list the uploaded files
    soap_portal = DvcPortalClient(connector("dvc_portal", soap=True))
    uploader = open_uploader(replace(settings, results_root=results_root), store, soap_portal)
    uploaded = upload_results(store, soap_portal, uploader, worker_id="demo:results")
    listed = drain(store, portal, worker_id="demo", batch_size=50, sole_feed_since=since)
    delivered = pushed.delivered + listed.delivered
    messages, dead, lookups = pushed.messages + listed.messages, pushed.dead + listed.dead + uploaded.dead, pushed.lookups
    results = backlog(store.engine)
    # (freshness is not shown: the simulated one-stop system's clock is not the real one)
    outbox = stats(store.engine)
    return {"_lines": [
        f"intake: {taken.read} changes read from the one-stop database, {taken.enqueued} new outbox events, "
        f"{taken.dead_lettered} dead letters",
        f"push: {delivered} events delivered in {messages} "
        f"{'JSON adapter calls' if settings.partner('dvc_portal').transport == 'json' else 'signed messages'} "
        f"({lookups} TraCuuHoSo lookups), "
        f"{dead} dead letters; outbox pending {outbox.depth.get('pending', 0)}",
        f"results: {attached.files} result file(s) of finished dossiers in the one-stop system "
        f"({attached.bytes / 1e6:,.1f} MB), {uploaded.uploads} uploaded in signed chunks with SHA-256 "
        f"({uploaded.uploaded_bytes / 1e6:,.1f} MB), then {listed.delivered} event(s) that waited behind them "
        f"(the snapshots listing the files' GiayToId among them); "
        f"{results.uploaded} uploaded in all, {results.pending} pending",
        "see: lienthong status, lienthong dlq list",
    ]}


def context_procedure(context: dict) -> str | None:
    return context.get("procedure", {}).get("MATTHC")


def _baocao(connector, settings: Settings, now: datetime, context: dict) -> dict:
    client = ReportingClient(connector("baocao"))
    month, year = now.month, now.year
    # The figures of what this demo itself handled: one dossier received online this month, still
    # being processed within its deadline. Real reports are computed from the store (reporting flow).
    rows = [{"MaCoQuan": settings.agency_code, "MaTTHC": context_procedure(context), "TiepNhanKyTruoc": 0,
             "TiepNhanTrucTuyen": 1, "TiepNhanTrucTiep": 0, "TiepNhanBuuChinh": 0, "GiaiQuyetTruocHan": 0,
             "GiaiQuyetDungHan": 0, "GiaiQuyetQuaHan": 0, "DangXuLyTrongHan": 1, "DangXuLyQuaHan": 0,
             "YeuCauBoSung": 0, "RutHoSo": 0, "DungXuLy": 0}]
    sent = client.send_report(period_kind="thang", year=year, period=month, agency_code=settings.agency_code,
                              rows=rows)
    status = client.report_status(sent.ma_bao_cao)
    return {"_lines": [f"report {sent.ma_bao_cao} for {month:02d}/{year} (the dossier above, in progress): "
                       f"{sent.trang_thai}, now {status.trang_thai}"]}
