"""Dead-code report for `make lint`: vulture over the project's packages, exit 1 when it finds any.

Reported: unused functions, methods, classes, properties and imports (vulture's 60% tier) and
anything vulture is sure of (100%: unreachable code, unused arguments of a local). Not reported:
unused variables and attributes at 60%, which here are model, serializer and settings fields that
Django reads by reflection (hundreds of them, none dead).

Names only a framework calls are ignored by convention below (Django's `handle`, DRF's
`validate_<field>`, Channels' `disconnect` ...); the rest of the entry points vulture cannot see
are named one by one in tools/vulture_whitelist.py, each with the caller that uses it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from vulture import Vulture

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["config", "core", "accounts", "training", "billing", "validation", "artifacts", "finetuning",
            "dashboard", "gpu_worker"]
REPORTED = {"function", "method", "class", "property", "import"}

# Called by Django, DRF, Celery, Channels or the admin, found by name.
FRAMEWORK_NAMES = [
    "handle", "add_arguments", "ready", "Meta", "Migration", "*Admin", "*Config", "*Inline",
    "has_*_permission", "has_permission", "has_object_permission", "get_*", "validate", "validate_*",
    "to_representation", "to_internal_value", "create", "update", "perform_*", "list", "retrieve", "destroy",
    "connect", "disconnect", "receive", "receive_json", "websocket_*", "authenticate", "authenticate_header",
    "process_*", "save_model", "formfield_for_*", "__getattr__", "__call__",
    # torch's nn.Module.forward; parameters a caller's signature requires (signal handlers'
    # sender and frame, drf-spectacular's hook arguments, DRF's `force`).
    "forward", "sender", "frame", "generator", "public", "force",
]
FRAMEWORK_DECORATORS = [
    "@shared_task", "@receiver", "@admin.register", "@admin.display", "@admin.action", "@register.filter",
    "@register.simple_tag", "@extend_schema", "@extend_schema_field", "@api_view", "@action", "@csrf_exempt",
    "@require_GET", "@require_POST", "@require_http_methods", "@login_required", "@app.task",
    "@worker_process_init.connect", "@setting_changed.connect", "@database_sync_to_async",
    "@signals.*.connect",
]


def unused() -> list:
    vulture = Vulture(ignore_names=FRAMEWORK_NAMES, ignore_decorators=FRAMEWORK_DECORATORS)
    vulture.scavenge([str(ROOT / p) for p in PACKAGES] + [str(ROOT / "tools" / "vulture_whitelist.py")],
                     exclude=["*/migrations/*"])
    return [item for item in vulture.get_unused_code(min_confidence=60)
            if item.typ in REPORTED or item.confidence >= 100]


def main() -> int:
    found = unused()
    for item in found:
        print(item.get_report(add_size=False))
    if found:
        print(f"\n{len(found)} unused names: delete them, or name their framework caller in "
              "tools/vulture_whitelist.py")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
