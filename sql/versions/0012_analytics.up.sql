-- 0012 analytics: (filled by its issue's work)
SELECT 1;
