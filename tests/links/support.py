"""A small CRM with links: customers, deals that link to them, invoices created for won deals."""

from __future__ import annotations

OBJECTS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: customer}
spec:
  fields:
    full_name: {type: string, required: true}
    phone: {type: phone}
    vip: {type: boolean}
    last_purchase: {type: string}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
    amount: {type: money}
    customer: {type: ref, object: customer}
    owner: {type: user}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: invoice}
spec:
  fields:
    deal: {type: ref, object: deal, required: true}
    amount: {type: money}
    owner: {type: user}
"""

AUTOMATIONS = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: won
      final: success
      rules:
        - {name: make invoice, action: create_record, object: invoice, pipeline: billing, stage: draft,
           set: {deal: "{{ record.id }}", amount: "{{ record.amount }}"}, save_as: invoice}
        - {name: log it, after: make invoice, action: add_note,
           text: "Invoice {{ saved.invoice.id }} for {{ saved.invoice.amount }}"}
        - {name: thank the customer, action: update_fields, target: customer,
           set: {last_purchase: "{{ record.title }}"}}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: billing}
spec:
  object: invoice
  stages:
    - id: draft
      rules:
        - {name: tell accounting, action: notify, to: {user: hoa},
           text: "Invoice for deal {{ record.deal }}: {{ record.amount }}"}
    - id: paid
      final: success
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: greet vip}
spec:
  object: deal
  trigger: {on: created, if: "linked.customer.vip"}
  start: sms
  nodes:
    sms: {type: send_sms, to: "{{ linked.customer.phone }}", text: "Chao {{ linked.customer.full_name | unaccent }}"}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: customer bought}
spec:
  object: customer
  trigger: {on: updated, changed: [last_purchase]}
  start: task
  nodes:
    task: {type: create_task, title: "Call {{ record.full_name }} about {{ record.last_purchase }}",
           assignee: {user: lan}}
"""

FILES = {"objects.yaml": OBJECTS, "automations.yaml": AUTOMATIONS}
