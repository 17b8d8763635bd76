"""The console's words in English and Vietnamese: one catalogue, the language chosen from the
``lang`` cookie (the switch on every page), else ``Accept-Language``, else English.

Every visible string of a page goes through :func:`translator`; a key missing from a language falls
back to English, and a key missing from English shows as itself, so a forgotten word is visible
rather than an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

LANGUAGES = ("en", "vi")
DEFAULT = "en"
COOKIE = "lang"

EN: Mapping[str, str] = {
    "console": "flowctl console",
    "boards": "Boards",
    "board": "Board",
    "record": "Record",
    "flows": "Flows and pipelines",
    "runs": "Runs",
    "run": "Run",
    "outbox": "Outbox",
    "care": "Care",
    "deployments": "Deployments",
    "health": "Health",
    "sign_in": "Sign in",
    "sign_out": "Sign out",
    "token": "Token",
    "signed_in_as": "Signed in as {name} ({role})",
    "read_only": "Read-only: no token is configured, so the console answers on this machine only",
    "bad_token": "That token is not accepted.",
    "sign_in_why": "Paste an API token; the console keeps a session cookie, never the token.",
    "language": "Language",
    "pipelines": "Pipelines",
    "pipeline": "Pipeline",
    "flow": "Flow",
    "object": "Object",
    "stages": "Stages",
    "records": "Records",
    "count": "Count",
    "counted_at": "Counts and sums as of",
    "sum": "Sum",
    "more": "More",
    "owner": "Owner",
    "search": "Search",
    "filter": "Filter",
    "clear": "Clear",
    "title": "Title",
    "amount": "Amount",
    "in_stage": "Updated",
    "pending_rules": "{n} pending rule(s)",
    "no_cards": "No records",
    "no_items": "Nothing here.",
    "fields": "Fields",
    "field": "Field",
    "value": "Value",
    "stage": "Stage",
    "stage_history": "Stage history",
    "at": "At",
    "timeline": "Timeline",
    "notes": "Notes",
    "messages": "Messages",
    "timers": "Pending timers",
    "due": "Due",
    "kind": "Kind",
    "node": "Node",
    "status": "Status",
    "automation": "Automation",
    "since": "Since",
    "until": "Until",
    "started": "Started",
    "updated": "Updated",
    "steps": "Steps",
    "waiting_for": "Waiting for",
    "trace": "Trace",
    "version": "Version",
    "next_page": "Next page",
    "first_page": "First page",
    "channel": "Channel",
    "action": "Action",
    "recipient": "Recipient",
    "summary": "Summary",
    "attempts": "Attempts",
    "next_attempt": "Next attempt",
    "last_error": "Last error",
    "created": "Created",
    "sent": "Sent",
    "retry": "Retry",
    "cancel": "Cancel",
    "retried": "Message {id} is queued again.",
    "cancelled": "Message {id} is cancelled.",
    "process": "Process",
    "next_firing": "Next firing",
    "next_7_days": "Next 7 days",
    "last_ticks": "Last ticks",
    "applied": "Applied",
    "commit": "Commit",
    "author": "Author",
    "message": "Message",
    "current": "current",
    "diff": "Diff",
    "compare": "Compare",
    "from": "From",
    "to": "To",
    "change": "Change",
    "lag": "Lag (seconds)",
    "open_changes": "Open changes",
    "engine": "Engine process",
    "last_reload": "Last reload",
    "running": "running",
    "stopped": "stopped",
    "engine_mode": "mode",
    "restarts": "restarts",
    "no_reload": "none since the daemon started",
    "recent_errors": "Recent errors",
    "problems": "Problems",
    "waiting": "waiting",
    "diagram": "Diagram",
    "any": "any",
    "not_found": "Not found",
    "error": "Error",
    "forbidden": "You may not do that.",
    "auto_refresh": "refreshes every 2 s",
    "role_needed": "Needs the operator role",
    "rollback_undoes": "A rollback to the older version undoes the changes below:",
    "rollback_note": "Rolling back to a version deploys it again through the same checks as apply.",
}

VI: Mapping[str, str] = {
    "console": "Bảng điều khiển flowctl",
    "boards": "Bảng Kanban",
    "board": "Bảng",
    "record": "Bản ghi",
    "flows": "Luồng và quy trình",
    "runs": "Lượt chạy",
    "run": "Lượt chạy",
    "outbox": "Hộp thư đi",
    "care": "Chăm sóc",
    "deployments": "Phiên bản triển khai",
    "health": "Tình trạng",
    "sign_in": "Đăng nhập",
    "sign_out": "Đăng xuất",
    "token": "Mã truy cập",
    "signed_in_as": "Đã đăng nhập: {name} ({role})",
    "read_only": "Chỉ xem: chưa cấu hình mã truy cập nên bảng điều khiển chỉ mở trên máy này",
    "bad_token": "Mã truy cập không hợp lệ.",
    "sign_in_why": "Dán mã truy cập API; bảng điều khiển chỉ giữ cookie phiên, không giữ mã.",
    "language": "Ngôn ngữ",
    "pipelines": "Quy trình",
    "pipeline": "Quy trình",
    "flow": "Luồng",
    "object": "Đối tượng",
    "stages": "Giai đoạn",
    "records": "Bản ghi",
    "count": "Số lượng",
    "counted_at": "Số lượng và tổng tính lúc",
    "sum": "Tổng",
    "more": "Xem thêm",
    "owner": "Người phụ trách",
    "search": "Tìm kiếm",
    "filter": "Lọc",
    "clear": "Bỏ lọc",
    "title": "Tiêu đề",
    "amount": "Giá trị",
    "in_stage": "Cập nhật",
    "pending_rules": "{n} quy tắc đang chờ",
    "no_cards": "Không có bản ghi",
    "no_items": "Không có gì.",
    "fields": "Trường dữ liệu",
    "field": "Trường",
    "value": "Giá trị",
    "stage": "Giai đoạn",
    "stage_history": "Lịch sử giai đoạn",
    "at": "Lúc",
    "timeline": "Dòng thời gian",
    "notes": "Ghi chú",
    "messages": "Tin nhắn",
    "timers": "Hẹn giờ đang chờ",
    "due": "Đến hạn",
    "kind": "Loại",
    "node": "Bước",
    "status": "Trạng thái",
    "automation": "Tự động hóa",
    "since": "Từ",
    "until": "Đến",
    "started": "Bắt đầu",
    "updated": "Cập nhật",
    "steps": "Số bước",
    "waiting_for": "Đang chờ",
    "trace": "Vết thực thi",
    "version": "Phiên bản",
    "next_page": "Trang sau",
    "first_page": "Trang đầu",
    "channel": "Kênh",
    "action": "Hành động",
    "recipient": "Người nhận",
    "summary": "Tóm tắt",
    "attempts": "Số lần gửi",
    "next_attempt": "Lần gửi tới",
    "last_error": "Lỗi gần nhất",
    "created": "Tạo lúc",
    "sent": "Đã gửi",
    "retry": "Gửi lại",
    "cancel": "Hủy",
    "retried": "Tin nhắn {id} đã được xếp hàng gửi lại.",
    "cancelled": "Tin nhắn {id} đã bị hủy.",
    "process": "Quy trình chăm sóc",
    "next_firing": "Lần chạy tới",
    "next_7_days": "7 ngày tới",
    "last_ticks": "Lần chạy gần nhất",
    "applied": "Triển khai lúc",
    "commit": "Commit",
    "author": "Tác giả",
    "message": "Nội dung",
    "current": "hiện tại",
    "diff": "Khác biệt",
    "compare": "So sánh",
    "from": "Từ",
    "to": "Đến",
    "change": "Thay đổi",
    "lag": "Độ trễ (giây)",
    "open_changes": "Thay đổi đang chờ",
    "engine": "Tiến trình engine",
    "last_reload": "Lần nạp lại gần nhất",
    "running": "đang chạy",
    "stopped": "đã dừng",
    "engine_mode": "chế độ",
    "restarts": "số lần khởi động lại",
    "no_reload": "chưa có từ khi daemon khởi động",
    "recent_errors": "Lỗi gần đây",
    "problems": "Sự cố",
    "waiting": "đang chờ",
    "diagram": "Sơ đồ",
    "any": "tất cả",
    "not_found": "Không tìm thấy",
    "error": "Lỗi",
    "forbidden": "Bạn không có quyền làm việc này.",
    "auto_refresh": "tự làm mới mỗi 2 giây",
    "role_needed": "Cần vai trò operator",
    "rollback_undoes": "Quay lại phiên bản cũ hơn sẽ hoàn tác các thay đổi dưới đây:",
    "rollback_note": "Quay lại một phiên bản sẽ triển khai lại nó qua cùng các bước kiểm tra như apply.",
}

CATALOGUE: Mapping[str, Mapping[str, str]] = {"en": EN, "vi": VI}

Translate = Callable[..., str]


def choose(cookie: str, accept_language: str) -> str:
    """The page's language: the switch's cookie when it names one we have, else the first language
    of ``Accept-Language`` we have (by q-value), else English."""
    if cookie in CATALOGUE:
        return cookie
    best, best_q = DEFAULT, 0.0
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if lang in CATALOGUE and q > best_q:
            best, best_q = lang, q
    return best


def translator(lang: str) -> Translate:
    """``t(key, **values)``: the word for ``key`` in ``lang``, with ``{values}`` filled in."""
    words = CATALOGUE.get(lang, EN)

    def t(key: str, **values: object) -> str:
        text = words.get(key) or EN.get(key) or key
        return text.format(**values) if values else text

    return t
