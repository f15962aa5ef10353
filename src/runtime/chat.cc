#include "specula/runtime/chat.h"

namespace specula {

std::string RenderGemma4Chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string s = "<bos>";
  for (const ChatMessage& m : messages) {
    const std::string role = m.role == "assistant" ? "model" : m.role;
    s += "<|turn>" + role + "\n" + m.content + "<turn|>\n";
  }
  if (add_generation_prompt) s += "<|turn>model\n";
  return s;
}

}  // namespace specula
