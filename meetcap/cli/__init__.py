"""The `meetcap` command: the app, `meetcap devices` and `meetcap record`."""
