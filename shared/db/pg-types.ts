// Type parsing shared by every pg connection in the process (pg.types is global).
// timestamp without time zone is read as UTC: our sessions and our partition bounds treat such
// columns as UTC (the design's rule), so 'YYYY-MM-DD HH:MM:SS' must not be shifted by the machine's zone.
import pg from "pg";

pg.types.setTypeParser(pg.types.builtins.TIMESTAMP, (v) => new Date(`${v.replace(" ", "T")}Z`));
