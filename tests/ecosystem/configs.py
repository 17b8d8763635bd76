"""A small config for the tests that check flowctl against its users' tools: a contact object and a
flow that sends an SMS through the built-in ``log`` channel when a contact is created."""

from __future__ import annotations

from pathlib import Path

from flowctl.testing import write_config

WELCOME = {
    "flowctl.yaml": """
        apiVersion: flowctl/v1
        kind: Config
        metadata: {name: ecosystem}
        spec:
          timezone: Asia/Ho_Chi_Minh
        ---
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: contact}
        spec:
          fields:
            full_name: {type: string, required: true}
            phone: {type: phone}
        ---
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: welcome}
        spec:
          object: contact
          trigger: {on: created}
          start: sms
          nodes:
            sms:
              type: send_sms
              to: "{{ record.phone }}"
              text: "Chao {{ record.full_name }}"
    """,
}


def welcome_config(tmp_path: Path) -> Path:
    """The config folder under ``tmp_path``."""
    return write_config(tmp_path / "config", WELCOME)
