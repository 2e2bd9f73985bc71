//! How a call's answer and its chunks reach an MCP client: a tool result (structured where the
//! answer is an object), and progress text.

use airlock::{CallError, Chunk, Reply};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Value};

/// A chunk as progress text.
pub(super) fn chunk_text(chunk: &Chunk) -> String {
    match chunk {
        Chunk::Json(value) => value.to_string(),
        Chunk::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// How a call ended, as a tool result.
pub(super) fn result(answered: Result<Reply, CallError>) -> CallToolResult {
    match answered {
        Ok(Reply::Ok(Value::Object(object))) => CallToolResult::structured(Value::Object(object)),
        Ok(Reply::Ok(value)) => {
            CallToolResult::success(vec![ContentBlock::text(value.to_string())])
        }
        Ok(Reply::Error(error)) => CallToolResult::structured_error(json!({
            "code": "error",
            "message": error,
        })),
        Ok(Reply::PendingApproval(id)) => CallToolResult::structured_error(json!({
            "code": "pending_approval",
            "message": format!("the operator must approve this call first (approval #{id})"),
        })),
        // Not an error: the action answers later, and the host program settles it.
        Ok(Reply::Pending { id, description }) => CallToolResult::structured(json!({
            "state": "pending",
            "id": id,
            "description": description,
        })),
        Err(e) => CallToolResult::structured_error(json!({
            "code": e.code.to_string(),
            "message": e.to_string(),
        })),
    }
}
