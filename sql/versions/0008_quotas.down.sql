-- 0008 quotas, undone: (filled by its issue's work)
SELECT 1;
