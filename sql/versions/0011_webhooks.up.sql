-- 0011 webhooks: (filled by its issue's work)
SELECT 1;
