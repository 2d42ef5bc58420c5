"""Chat templates for the tiny test models, written for this project in each family's published turn format.

- Gemma 4: `<|turn>{role}\\n...<turn|>\\n`, assistant written `model`, a native system/developer turn,
  `enable_thinking` (injects `<|think|>` into the system turn), tool declarations, content as a string or a list
  of parts (text/image/audio), `| trim` on content; shipped standalone as chat_template.jinja.
- Gemma 3: `<start_of_turn>{role}\\n...<end_of_turn>\\n`, a system message folded into the first user turn, strict
  user/model alternation; stored inside tokenizer_config.json.
- Qwen3: ChatML `<|im_start|>{role}\\n...<|im_end|>\\n`, with an empty think block after the generation prompt
  when `enable_thinking` is false.
They only use Jinja features that minijinja (the Rust side) supports, plus `raise_exception` like real templates.
"""

GEMMA4 = """{%- macro render_content(content) -%}
{%- if content is string -%}
{{- content | trim -}}
{%- else -%}
{%- for part in content -%}
{%- if part['type'] == 'text' -%}
{{- part['text'] | trim -}}
{%- elif part['type'] == 'image' -%}
{{- '<|image|>' -}}
{%- elif part['type'] == 'audio' -%}
{{- '<|audio|>' -}}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{{- bos_token -}}
{%- set thinking = enable_thinking is defined and enable_thinking -%}
{%- set has_system = messages | length > 0 and messages[0]['role'] in ['system', 'developer'] -%}
{%- if has_system or thinking or tools -%}
{{- '<|turn>system\\n' -}}
{%- if thinking -%}{{- '<|think|>' -}}{%- endif -%}
{%- if has_system -%}{{- render_content(messages[0]['content']) -}}{%- endif -%}
{%- for tool in tools or [] -%}
{{- '<|tool>' + (tool | tojson) + '<tool|>' -}}
{%- endfor -%}
{{- '<turn|>\\n' -}}
{%- endif -%}
{%- set loop_messages = messages[1:] if has_system else messages -%}
{%- for message in loop_messages -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<|turn>' + role + '\\n' -}}
{%- if message['role'] == 'tool' -%}
{{- '<|tool_response>' + render_content(message['content']) + '<tool_response|>' -}}
{%- else -%}
{{- render_content(message['content']) -}}
{%- endif -%}
{{- '<turn|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|turn>model\\n' -}}
{%- endif -%}
"""

GEMMA3 = """{{- bos_token -}}
{%- if messages[0]['role'] == 'system' -%}
{%- set system_text = messages[0]['content'] if messages[0]['content'] is string else messages[0]['content'][0]['text'] -%}
{%- set first_user_prefix = system_text + '\\n\\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = '' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
{%- endif -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') -}}
{%- if message['content'] is string -%}
{{- message['content'] | trim -}}
{%- else -%}
{%- for item in message['content'] -%}
{%- if item['type'] == 'image' -%}
{{- '<start_of_image>' -}}
{%- elif item['type'] == 'text' -%}
{{- item['text'] | trim -}}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{{- '<end_of_turn>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\\n' -}}
{%- endif -%}
"""

QWEN3 = """{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\\n' -}}
{%- if enable_thinking is defined and not enable_thinking -%}
{{- '<think>\\n\\n</think>\\n\\n' -}}
{%- endif -%}
{%- endif -%}
"""
