// Date handling shared by every pg connection in the process (pg.types and pg.defaults are global,
// so importing this module once configures every Pool and Client: the URL path, the Cloud SQL
// connector path, and the bundles, which load pg from node_modules rather than inlining it).
//
// Our sessions and partition bounds treat `timestamp without time zone` columns as UTC wall-clock
// times (the design's rule), in both directions:
// - reading: 'YYYY-MM-DD HH:MM:SS' is parsed as UTC, never shifted by the machine's zone;
// - writing: a Date parameter is sent as UTC ('...+00:00'). pg's default writes it in the process's
//   local zone ('...+09:00' under TZ=Asia/Tokyo), and PostgreSQL drops the offset when it casts the
//   text to `timestamp`, so every comparison with such a column moved by the local offset (retention
//   deleted rows 9 hours newer than its cutoff). Session TimeZone=UTC does not help: the offset is
//   discarded, not converted. For timestamptz columns both forms denote the same instant.
import pg from "pg";

pg.types.setTypeParser(pg.types.builtins.TIMESTAMP, (v) => new Date(`${v.replace(" ", "T")}Z`));
pg.defaults.parseInputDatesAsUTC = true;
