/*
 * libpg_query's deparser called with PostgreSQL's error handling around it, as PG_TRY does:
 * an error inside it jumps back here instead of out through Rust frames. Declared without
 * PostgreSQL's headers, as libpg_query builds them: the per-thread error handler stack and
 * error context (utils/elog.h), the current memory context (utils/palloc.h) and the string
 * buffer the deparser writes (lib/stringinfo.h).
 */
#include <setjmp.h>
#include <stddef.h>

typedef struct StringInfoData
{
	char	   *data;
	int			len;
	int			maxlen;
	int			cursor;
} StringInfoData;

extern __thread sigjmp_buf *PG_exception_stack;
extern __thread void *error_context_stack;
extern __thread void *CurrentMemoryContext;
extern void initStringInfo(StringInfoData *str);
extern void deparseRawStmt(StringInfoData *str, void *raw_stmt);
extern void FlushErrorState(void);

/*
 * The SQL of one RawStmt, in the current memory context (copy it out before leaving the
 * context); NULL when the deparser raised an error.
 */
const char *
migrate_deparse_raw_stmt(void *raw_stmt)
{
	sigjmp_buf *saved_stack = PG_exception_stack;
	void	   *saved_context_stack = error_context_stack;
	void	   *saved_memory = CurrentMemoryContext;
	sigjmp_buf	local;
	StringInfoData str;
	const char *volatile out = NULL;

	if (sigsetjmp(local, 0) == 0)
	{
		PG_exception_stack = &local;
		initStringInfo(&str);
		deparseRawStmt(&str, raw_stmt);
		out = str.data;
	}
	else
	{
		CurrentMemoryContext = saved_memory;
		FlushErrorState();
		out = NULL;
	}
	PG_exception_stack = saved_stack;
	error_context_stack = saved_context_stack;
	return out;
}
