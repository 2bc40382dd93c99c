"""Examples of what runs beside rero: a lab server (lab_server.py)."""
