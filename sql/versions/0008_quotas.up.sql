-- 0008 quotas: (filled by its issue's work)
SELECT 1;
