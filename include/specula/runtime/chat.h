// The Gemma 4 chat template, rendered to text that the tokenizer then encodes:
//   <bos>[<|turn>system\n{system}<turn|>\n]<|turn>user\n{msg}<turn|>\n ... <|turn>model\n
// The assistant role is rendered as "model". Generation stops on <turn|> and <eos>.
#pragma once

#include <string>
#include <vector>

namespace specula {

struct ChatMessage {
  std::string role;  // system | user | assistant (rendered "model")
  std::string content;
};

std::string RenderGemma4Chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt);

}  // namespace specula
