-- 0003 mail outbox, undone.
DROP TABLE core.mail_outbox CASCADE;
