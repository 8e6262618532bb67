-- Demo data for the bill170 and fault112 flows (SQLite). Create with:
--   python -m ivr.tools demo-db sqlite:///run/ivr-demo.db
-- PINs are stored as the SHA-256 of the six digits; every demo PIN is 123456.
CREATE TABLE IF NOT EXISTS accounts (
  phone TEXT PRIMARY KEY,
  pin_sha256 TEXT NOT NULL,
  balance NUMERIC NOT NULL,
  due_date TEXT NOT NULL
);
INSERT OR REPLACE INTO accounts VALUES
  ('13800138000', '8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92', 12.30, '2026-12-15'),
  ('13912345678', '8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92', 0.05, '2026-12-15'),
  ('17012345678', '8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92', 200000, '2026-11-30');
CREATE TABLE IF NOT EXISTS tickets (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  phone TEXT NOT NULL,
  caller TEXT NOT NULL,
  recording TEXT NOT NULL,
  created TEXT NOT NULL
);
-- ticket numbers start at 2026001
INSERT INTO sqlite_sequence (name, seq)
  SELECT 'tickets', 2026000 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tickets');
