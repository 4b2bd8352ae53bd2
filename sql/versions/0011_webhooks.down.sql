-- 0011 webhooks, undone: (filled by its issue's work)
SELECT 1;
