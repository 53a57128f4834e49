//! NATS subject names (§1.2). The agent id is part of every agent-side subject because the
//! stock NATS authorization only lets an agent use subjects carrying its own id.

/// Where the director sends requests to one agent.
pub fn agent_inbox(agent_id: &str) -> String {
    format!("agent.{agent_id}")
}

/// A reply subject the NATS permissions let `agent_id` publish to.
pub fn director_reply(director_process: &str, agent_id: &str, request_id: &str) -> String {
    format!("director.{director_process}.{agent_id}.{request_id}")
}

/// The wildcard one director process subscribes to for all its replies.
pub fn director_replies(director_process: &str) -> String {
    format!("director.{director_process}.>")
}

pub fn heartbeat(agent_id: &str) -> String {
    format!("hm.agent.heartbeat.{agent_id}")
}

pub fn alert(agent_id: &str) -> String {
    format!("hm.agent.alert.{agent_id}")
}

pub fn shutdown(agent_id: &str) -> String {
    format!("hm.agent.shutdown.{agent_id}")
}

/// The agent id carried by a reply subject (its third token), if it has that shape.
pub fn reply_agent_id(reply_to: &str) -> Option<&str> {
    let mut parts = reply_to.split('.');
    (parts.next()? == "director").then_some(())?;
    parts.next()?;
    parts.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subject_carries_the_agent_id_as_third_token() {
        let s = director_reply("p", "a-1", "r");
        assert_eq!(s, "director.p.a-1.r");
        assert_eq!(reply_agent_id(&s), Some("a-1"));
        assert_eq!(reply_agent_id("inbox.x.y"), None);
    }
}
