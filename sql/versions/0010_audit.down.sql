-- 0010 audit, undone: (filled by its issue's work)
SELECT 1;
