//! JSON updates as Telegram would deliver them, for [`super::FakeBotApi::push_update`].

use serde_json::{Value, json};

/// A user (never a bot).
pub fn user(id: i64) -> Value {
    json!({ "id": id, "is_bot": false, "first_name": format!("User{id}"), "username": format!("user{id}") })
}

/// A chat: positive ids are private chats, negative ones supergroups.
pub fn chat(id: i64) -> Value {
    if id > 0 {
        json!({ "id": id, "type": "private", "first_name": format!("User{id}") })
    } else {
        json!({ "id": id, "type": "supergroup", "title": format!("Group{id}"), "is_forum": true })
    }
}

/// A message from `user_id` in `chat_id`, optionally in a forum topic.
pub fn message(chat_id: i64, user_id: i64, message_id: i64, topic: Option<i64>) -> Value {
    let mut message = json!({
        "message_id": message_id,
        "date": 1_700_000_000,
        "chat": chat(chat_id),
        "from": user(user_id),
    });
    if let Some(topic) = topic {
        message["message_thread_id"] = json!(topic);
        message["is_topic_message"] = json!(true);
    }
    message
}

/// A text message update (without `update_id`; the fake assigns it).
pub fn text(chat_id: i64, user_id: i64, message_id: i64, text: &str) -> Value {
    let mut message = message(chat_id, user_id, message_id, None);
    message["text"] = json!(text);
    json!({ "message": message })
}

/// A text message in a forum topic.
pub fn topic_text(chat_id: i64, user_id: i64, message_id: i64, topic: i64, text: &str) -> Value {
    let mut message = message(chat_id, user_id, message_id, Some(topic));
    message["text"] = json!(text);
    json!({ "message": message })
}

/// A text message replying to `quoted` (a message of the bot, id 42).
pub fn reply(chat_id: i64, user_id: i64, message_id: i64, text: &str, quoted: &str) -> Value {
    let mut replied = message(chat_id, 42, message_id - 1, None);
    replied["from"] =
        json!({ "id": 42, "is_bot": true, "first_name": "Ductor", "username": "ductor_test_bot" });
    replied["text"] = json!(quoted);
    let mut message = message(chat_id, user_id, message_id, None);
    message["text"] = json!(text);
    message["reply_to_message"] = replied;
    json!({ "message": message })
}

/// A document message; register the file with [`super::FakeBotApi::add_file`].
pub fn document(
    chat_id: i64,
    user_id: i64,
    message_id: i64,
    file_id: &str,
    name: &str,
    size: u64,
    caption: &str,
) -> Value {
    let mut message = message(chat_id, user_id, message_id, None);
    message["document"] = json!({
        "file_id": file_id,
        "file_unique_id": format!("u{file_id}"),
        "file_size": size,
        "file_name": name,
        "mime_type": "text/plain",
    });
    message["caption"] = json!(caption);
    json!({ "message": message })
}

/// A press of an inline button with `data` on the bot's message `message_id`.
pub fn callback(chat_id: i64, user_id: i64, message_id: i64, data: &str) -> Value {
    let mut shown = message(chat_id, 42, message_id, None);
    shown["from"] =
        json!({ "id": 42, "is_bot": true, "first_name": "Ductor", "username": "ductor_test_bot" });
    shown["text"] = json!("menu");
    json!({ "callback_query": {
        "id": format!("cb{message_id}{user_id}"),
        "from": user(user_id),
        "message": shown,
        "chat_instance": "ci",
        "data": data,
    }})
}

/// The bot was added to `chat_id` by `user_id`.
pub fn bot_added(chat_id: i64, user_id: i64) -> Value {
    json!({ "my_chat_member": {
        "chat": chat(chat_id),
        "from": user(user_id),
        "date": 1_700_000_000,
        "old_chat_member": { "user": { "id": 42, "is_bot": true, "first_name": "Ductor" }, "status": "left" },
        "new_chat_member": { "user": { "id": 42, "is_bot": true, "first_name": "Ductor" }, "status": "member" },
    }})
}

/// A photo message (two sizes; the larger one should be taken).
pub fn photo(chat_id: i64, user_id: i64, message_id: i64, file_id: &str, size: u64) -> Value {
    let mut message = message(chat_id, user_id, message_id, None);
    message["photo"] = json!([
        { "file_id": "thumb", "file_unique_id": "uthumb", "file_size": 10, "width": 90, "height": 90 },
        { "file_id": file_id, "file_unique_id": format!("u{file_id}"), "file_size": size, "width": 1280, "height": 960 },
    ]);
    json!({ "message": message })
}
