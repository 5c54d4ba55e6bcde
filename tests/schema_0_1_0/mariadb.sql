-- The tables imgproc 0.1.0 made with metadata.create_all on mariadb (its last release before
-- migrations), as it emitted them: the database that `imgproc db upgrade` must adopt, rows kept.

CREATE TABLE vendors (
	id INTEGER NOT NULL AUTO_INCREMENT,
	name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	key_hash VARCHAR(64) NOT NULL,
	is_operator BOOL NOT NULL,
	created_at DATETIME(6) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (name),
	UNIQUE (key_hash)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE TABLE records (
	id INTEGER NOT NULL AUTO_INCREMENT,
	vendor VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	record_id VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	original_url TEXT,
	bg_removed_url TEXT,
	face_crop_url TEXT,
	processed_url TEXT,
	processed BOOL NOT NULL,
	writes INTEGER NOT NULL DEFAULT '0',
	created_at DATETIME(6) NOT NULL,
	updated_at DATETIME(6) NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_records_vendor_record UNIQUE (vendor, record_id)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE TABLE webhook_secrets (
	id INTEGER NOT NULL AUTO_INCREMENT,
	vendor VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	secret VARCHAR(100) NOT NULL,
	created_at DATETIME(6) NOT NULL,
	PRIMARY KEY (id)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_webhook_secrets_vendor ON webhook_secrets (vendor);

CREATE TABLE webhook_messages (
	id VARCHAR(40) NOT NULL,
	vendor VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
	type VARCHAR(32) NOT NULL,
	job_id VARCHAR(64),
	batch_id VARCHAR(64),
	url TEXT NOT NULL,
	body TEXT NOT NULL,
	state VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	last_status INTEGER,
	last_error TEXT,
	next_try_at DATETIME(6),
	created_at DATETIME(6) NOT NULL,
	updated_at DATETIME(6) NOT NULL,
	PRIMARY KEY (id)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_webhook_messages_state ON webhook_messages (state, vendor);

CREATE TABLE webhook_attempts (
	id INTEGER NOT NULL AUTO_INCREMENT,
	message_id VARCHAR(40) NOT NULL,
	attempt INTEGER NOT NULL,
	url TEXT NOT NULL,
	status_code INTEGER,
	error TEXT,
	latency_ms INTEGER,
	next_try_at DATETIME(6),
	created_at DATETIME(6) NOT NULL,
	PRIMARY KEY (id)
)ENGINE=InnoDB CHARSET=utf8mb4;

CREATE INDEX ix_webhook_attempts_message_id ON webhook_attempts (message_id);
