-- 0012 analytics, undone: (filled by its issue's work)
SELECT 1;
