"""Pure decisions: plain functions of plain data, no I/O, no kopf."""
