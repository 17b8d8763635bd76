"""The example of DESIGN.md (the welcome-new-email flow and its Test), completed into a directory.

Only what the design leaves out is added: the user object, its pipeline (for the ``move``), the
templates, the allocation rule and the ``nurture`` flow that ``goto_flow`` continues in. The Flow
and the Test are verbatim.
"""

from __future__ import annotations

FILES = {
    "flowctl.yaml": """
apiVersion: flowctl/v1
kind: Config
metadata: {name: main}
spec: {timezone: Asia/Ho_Chi_Minh}
""",
    "objects/user.yaml": """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: user}
spec:
  fields:
    full_name: {type: string}
    email:     {type: email}
    segment:   {type: enum, values: [vip, std]}
""",
    "pipelines/onboarding.yaml": """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: onboarding}
spec:
  object: user
  stages:
    - id: signed_up
    - id: onboarded
""",
    "templates/welcome.yaml": """
apiVersion: flowctl/v1
kind: Template
metadata: {name: welcome-vip}
spec: {channel: email, subject: "Chào mừng khách VIP", text: "Xin chào {{ record.email }}"}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: welcome}
spec: {channel: email, subject: "Chào mừng", text: "Xin chào {{ record.email }}"}
""",
    "rules/sales-rr.yaml": """
apiVersion: flowctl/v1
kind: AllocationRule
metadata: {name: sales-rr}
spec: {strategy: round_robin, users: [lan, minh, tuan]}
""",
    "flows/welcome-new-email.yaml": """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome-new-email}
spec:
  object: user
  trigger: {on: updated, changed: [email], if: "record.email and not before.email"}
  mode: single            # per record: single | restart | queued | parallel
  start: pick
  nodes:
    pick:      {type: branch, branches: [{if: "record.segment == 'vip'", next: vip_mail}], default: std_mail}
    vip_mail:  {type: send_email, template: welcome-vip, next: wait}
    std_mail:  {type: send_email, template: welcome, next: wait}
    wait:      {type: wait_event, event: ticket.created, for: 3d, on_timeout: call, next: done}
    call:      {type: create_task, title: "Gọi cho {{ record.full_name }}", assignee: {rule: sales-rr}, next: done}
    done:      {type: goto_flow, flow: nurture}
""",
    "flows/nurture.yaml": """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: nurture}
spec:
  object: user
  start: later
  nodes:
    later: {type: delay, for: 1w, next: tips}
    tips:  {type: send_email, template: welcome}
""",
    "tests/welcome.yaml": """
apiVersion: flowctl/v1
kind: Test
metadata: {name: vip gets vip welcome}
spec:
  now: "2026-03-01T09:00:00+07:00"
  records: [{object: user, id: 1, fields: {email: null, segment: vip}}]
  steps:
    - update: {object: user, id: 1, fields: {email: lan@example.com}}
    - expect: {effects: [{action: send_email, template: welcome-vip, to: lan@example.com}]}
    - advance: 3d
    - expect: {effects: [{action: create_task}]}
    - move: {object: user, id: 1, stage: onboarded}       # for records in a pipeline
    - event: {event: ticket.created, object: user, id: 1}
    - expect: {effects: [], record: {object: user, id: 1, stage: onboarded}}
""",
}
