-- The tables imgproc 0.1.0 made with metadata.create_all on sqlite (its last release before
-- migrations), as it emitted them: the database that `imgproc db upgrade` must adopt, rows kept.

CREATE TABLE vendors (
	id INTEGER NOT NULL,
	name VARCHAR(64) NOT NULL,
	key_hash VARCHAR(64) NOT NULL,
	is_operator BOOLEAN NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (name),
	UNIQUE (key_hash)
);

CREATE TABLE records (
	id INTEGER NOT NULL,
	vendor VARCHAR(64) NOT NULL,
	record_id VARCHAR(191) NOT NULL,
	original_url TEXT,
	bg_removed_url TEXT,
	face_crop_url TEXT,
	processed_url TEXT,
	processed BOOLEAN NOT NULL,
	writes INTEGER DEFAULT '0' NOT NULL,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_records_vendor_record UNIQUE (vendor, record_id)
);

CREATE TABLE webhook_secrets (
	id INTEGER NOT NULL,
	vendor VARCHAR(64) NOT NULL,
	secret VARCHAR(100) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_webhook_secrets_vendor ON webhook_secrets (vendor);

CREATE TABLE webhook_messages (
	id VARCHAR(40) NOT NULL,
	vendor VARCHAR(64) NOT NULL,
	type VARCHAR(32) NOT NULL,
	job_id VARCHAR(64),
	batch_id VARCHAR(64),
	url TEXT NOT NULL,
	body TEXT NOT NULL,
	state VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	last_status INTEGER,
	last_error TEXT,
	next_try_at DATETIME,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_webhook_messages_state ON webhook_messages (state, vendor);

CREATE TABLE webhook_attempts (
	id INTEGER NOT NULL,
	message_id VARCHAR(40) NOT NULL,
	attempt INTEGER NOT NULL,
	url TEXT NOT NULL,
	status_code INTEGER,
	error TEXT,
	latency_ms INTEGER,
	next_try_at DATETIME,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_webhook_attempts_message_id ON webhook_attempts (message_id);
