"""The built-in drifting data stream (core: imports only `ctcd.config`, `ctcd.errors`, `ctcd.workspace`).

Three modules, one concern each: `generator` is a bit-exact numpy port of river's Agrawal generator (rows and
labels for a seed); `scenario` turns the config's `stream` section into days of data (scheduled covariate,
prior and concept drifts, corrupted batches, delayed labels) held in memory; `landing` writes those days to
`$CTCD_HOME/stream` with a manifest of hashes and copies what is due into the workspace (`land_due`,
`stream_status`). Import from the module that owns a name; nothing is re-exported here.
"""
